package files

// Credential is the user whose file-system rights a transfer has: the
// files it reads and writes are checked, and the files it creates owned,
// as for that user. The agent sets it to the user its shells run as.
type Credential struct {
	UID, GID uint32
	// Groups are the supplementary groups; empty means GID alone.
	Groups []uint32
}
