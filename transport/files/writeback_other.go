//go:build !linux

package files

import "os"

// startWriteback does nothing where sync_file_range is missing: the fsync
// before the rename writes everything.
func startWriteback(*os.File, int64, int64) {}

// preallocate does nothing where fallocate is missing.
func preallocate(*os.File, int64, int64) {}
