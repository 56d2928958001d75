//go:build !linux

package files

import "os"

// startWriteback does nothing where sync_file_range is missing: the fsync
// before the rename writes everything.
func startWriteback(*os.File, int64, int64) {}

// preallocate does nothing where fallocate is missing.
func preallocate(*os.File, int64, int64) {}

// syncFileSystem syncs dir itself where syncfs is missing: each file was
// synced before its rename (syncEachFile).
func syncFileSystem(dir *os.File) error {
	_ = dir.Sync() // not every system syncs a directory
	return nil
}

// syncEachFile: every extracted file is synced before its rename.
const syncEachFile = true
