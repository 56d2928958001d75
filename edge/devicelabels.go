package edge

// deviceRef is device id as policy p sees it: the labels of its
// certificate, from this edge's registry or, for a device of another edge,
// from the cluster's presence, with p's labels file on top. A device that
// is nowhere to be seen has the labels of the file only.
func (s *Server) deviceRef(p Policy, id string) DeviceRef {
	ref := DeviceRef{ID: id}
	if d, ok := s.reg.Lookup(id); ok {
		ref.Labels = d.Labels
	} else if s.Cluster != nil {
		if rec, ok := s.Cluster.Presence.Lookup(id); ok {
			ref.Labels = rec.Labels
		}
	}
	return LabelDevice(p, ref)
}
