// Package edge is the broker where devices and people meet. It
// authenticates devices by their certificates and clients by bearer tokens,
// decides stream by stream what each client may do on each device, splices
// the allowed streams with backpressure, and records an audit trail.
//
// A Server is an http.Handler: the caller owns the listener and the
// http.Server (HTTPServer builds one with the Server's limits, Listener
// wraps the listener), and the Server owns the sessions it hijacked from
// it. Shutdown drains them and Close ends them. Server, JSONAuditor,
// Metrics and MemoryRegistry are struct literals that work from their zero
// value; NewRolePolicy (roles that match people by name and group and
// tokens by name, and cover devices by ID and label), NewStaticPolicy (a
// list of clients, each a token with a role of its own) and
// ParseRevocations build the values a Server checks against. A Policy
// sees a device as a DeviceRef: its ID and the labels of its certificate
// and of the edge's labels file.
//
// Registry, Policy and Auditor are interfaces so that a registry shared by
// several edges, other policy sources and other audit sinks can replace the
// in-memory ones.
package edge
