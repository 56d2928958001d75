package files

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Archive bounds.
const (
	// DefaultMaxSize bounds a file, and the bytes of an archive's entries
	// together, when Limits.MaxBytes is zero: 4 GiB.
	DefaultMaxSize = 4 << 30
	// DefaultMaxEntries bounds an archive's entries when Limits.MaxEntries
	// is zero.
	DefaultMaxEntries = 100_000
)

// Limits bound what an extraction writes.
type Limits struct {
	// MaxBytes bounds the sizes of all regular entries together, in
	// bytes; 0 means DefaultMaxSize.
	MaxBytes int64
	// MaxEntries bounds the entries; 0 means DefaultMaxEntries.
	MaxEntries int
	// UID and GID own what is written; -1 (or 0 with the other -1) keeps
	// the writer's own. Both -1: no chown.
	UID, GID int
	// Umask is cleared from every mode written. setuid, setgid and sticky
	// bits are always cleared.
	Umask fs.FileMode
}

func (l Limits) maxBytes() int64 {
	if l.MaxBytes <= 0 {
		return DefaultMaxSize
	}
	return l.MaxBytes
}

func (l Limits) maxEntries() int {
	if l.MaxEntries <= 0 {
		return DefaultMaxEntries
	}
	return l.MaxEntries
}

func (l Limits) perm(m fs.FileMode) fs.FileMode { return m.Perm() &^ l.Umask }

func (l Limits) chown(f interface{ Chown(int, int) error }) error {
	if l.UID < 0 && l.GID < 0 {
		return nil
	}
	return f.Chown(l.UID, l.GID)
}

// WriteTar writes rel (a file or directory beneath root; "." for root
// itself) to tw under the name base, recursively. Special files, and
// symbolic links whose target is absolute or leaves base, are skipped, as
// qbee-v1 devices do. skipped is called for each with the reason.
func WriteTar(tw *tar.Writer, root *os.Root, rel, base string, skipped func(name, why string)) error {
	if skipped == nil {
		skipped = func(string, string) {}
	}
	return writeEntry(tw, root, rel, base, base, skipped)
}

func writeEntry(tw *tar.Writer, root *os.Root, rel, name, base string, skipped func(string, string)) error {
	fi, err := root.Lstat(rel)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode().IsRegular():
		f, err := root.OpenFile(rel, os.O_RDONLY|oNoFollow|oNonBlock, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = name, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.CopyN(tw, f, fi.Size())
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%s shrank from %d to %d bytes while being read", name, fi.Size(), n)
			}
			return err
		}
		return nil
	case fi.IsDir():
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = name+"/", "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		d, err := root.Open(rel)
		if err != nil {
			return err
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := writeEntry(tw, root, path.Join(rel, e.Name()), name+"/"+e.Name(), base, skipped); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err := root.Readlink(rel)
		if err != nil {
			return err
		}
		if !linkStaysIn(name, link) {
			skipped(name, "symbolic link to "+link+" leads outside "+base)
			return nil
		}
		hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: link, Mode: 0o777, ModTime: fi.ModTime()}
		return tw.WriteHeader(hdr)
	default:
		skipped(name, "special file ("+fi.Mode().Type().String()+")")
		return nil
	}
}

// linkStaysIn reports whether a symbolic link at name (an archive path)
// with target link stays within name's top-level directory.
func linkStaysIn(name, link string) bool {
	if link == "" || path.IsAbs(link) {
		return false
	}
	j := path.Join(path.Dir(name), link)
	top, _, _ := strings.Cut(name, "/")
	return j == top || strings.HasPrefix(j, top+"/")
}

// Extract reads a tar archive from r and writes it beneath root at dest
// (a path relative to root; "." for root itself), with the qbee-v1
// semantics: when dest is an existing directory, the archive is extracted
// into it; otherwise an archive whose first entry is a file writes that
// one file at dest (its parent must exist), and one whose first entry is a
// directory creates dest and strips the top-level name.
//
// Every path is opened through root, and through a root at dest once dest
// is a directory, so neither a name in the archive nor a symbolic link on
// disk leads outside dest. Absolute names, ".."
// components, hard links, device files and FIFOs are refused
// (ErrUnsafe); more entries or bytes than lim allows are refused
// (ErrLimit). Each file is written to a temporary name and renamed into
// place; once the archive ends, what was written is synced to disk before
// Extract returns. It returns the number of entries and of file bytes
// written.
func Extract(root *os.Root, dest string, r io.Reader, lim Limits) (entries int, written int64, err error) {
	x := &extractor{root: root, lim: lim, in: &headerBudget{r: r}}
	err = x.run(dest, tar.NewReader(x.in))
	if x.sub != nil {
		x.sub.Close()
	}
	return x.entries, x.bytes, err
}

// maxHeaderBytes bounds what one tar.Next may read: an entry's header,
// the meta headers before it (a PAX header and a GNU long name or link,
// 1 MiB at most each in archive/tar), and the padding of the entry
// before. archive/tar reads a run of meta headers in one Next, without
// end: an archive that is nothing but PAX headers would keep the device
// parsing for as long as the writer sends them.
const maxHeaderBytes = 4 << 20

// headerBudget is the archive's reader, which fails a read past its budget
// (left): maxHeaderBytes while a header is read, the entry's size while
// its data is.
type headerBudget struct {
	r    io.Reader
	left int64
}

func (b *headerBudget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w: the archive's headers run past %d MiB before an entry", ErrLimit, maxHeaderBytes>>20)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

type extractor struct {
	in      *headerBudget
	root    *os.Root
	sub     *os.Root // the root opened at dest, if any; closed at the end
	lim     Limits
	entries int
	bytes   int64
}

func (x *extractor) run(dest string, tr *tar.Reader) error {
	mode := "into" // extract into dest, names kept
	if fi, err := x.root.Lstat(dest); err == nil {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is a symbolic link; refusing to write through it", ErrUnsafe, dest)
		case fi.IsDir():
		case fi.Mode().IsRegular():
			mode = "file"
		default:
			return fmt.Errorf("%w: %s is a special file", ErrUnsafe, dest)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		mode = "new"
		if fi, err := x.root.Stat(path.Dir(dest)); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s: the parent directory does not exist; create it first", dest)
		}
	} else {
		return err
	}
	if mode == "into" && dest != "." {
		if err := x.within(dest); err != nil {
			return err
		}
		dest = "."
	}
	top := ""
	for {
		x.in.left = maxHeaderBytes
		hdr, err := tr.Next()
		if err == io.EOF {
			if x.entries == 0 {
				return fmt.Errorf("%w: the archive is empty", ErrUnsafe)
			}
			return x.flush()
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		x.in.left = max(hdr.Size, 0) // its data, read by entry
		x.entries++
		if x.entries > x.lim.maxEntries() {
			return fmt.Errorf("%w: the archive has more than %d entries", ErrLimit, x.lim.maxEntries())
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if err := checkType(hdr); err != nil {
			return err
		}
		var target string
		switch mode {
		case "into":
			target = path.Join(dest, name)
		case "new", "file":
			if x.entries == 1 {
				if hdr.Typeflag == tar.TypeDir && mode == "new" {
					top = name
					if err := x.root.Mkdir(dest, x.dirPerm(hdr)); err != nil {
						return err
					}
					if err := x.own(dest); err != nil {
						return err
					}
					if err := x.within(dest); err != nil {
						return err
					}
					dest = "."
					continue
				}
				if hdr.Typeflag != tar.TypeReg {
					return fmt.Errorf("%w: the archive's first entry %s is a %s, and %s is a file", ErrUnsafe, name, typeWord(hdr.Typeflag), dest)
				}
				target = dest
				mode = "single"
				break
			}
			rest, ok := strings.CutPrefix(name, top+"/")
			if top == "" || !ok {
				return fmt.Errorf("%w: entry %s is not under the archive's top-level directory %s", ErrUnsafe, name, top)
			}
			target = path.Join(dest, rest)
		case "single":
			return fmt.Errorf("%w: the archive holds more than one entry, and %s is a file", ErrUnsafe, dest)
		}
		if err := x.entry(hdr, name, target, tr); err != nil {
			return err
		}
	}
}

// flush puts what the extraction wrote on disk before it reports success,
// as a single file's upload does: a device that loses power after the
// answer keeps every file whole. It is one sync of the file system, after
// each file's writeback was started as it was written.
func (x *extractor) flush() error {
	d, err := x.root.Open(".")
	if err == nil {
		err = syncFS(d)
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("sync the extracted files to disk: %w", err)
	}
	return nil
}

// syncFS is syncFileSystem; tests watch when it runs.
var syncFS = syncFileSystem

// within makes the directory dest the root of the entries to come. The
// names of links are checked against the archive, not the disk: a link
// that an earlier link leads into (top/b/c -> .., then top/b/c/l -> ..),
// or the top-level name that dest replaces (top/l -> ../top), would
// otherwise take later entries out of dest to what lies next to it.
func (x *extractor) within(dest string) error {
	r, err := x.root.OpenRoot(dest)
	if err != nil {
		return err
	}
	x.root, x.sub = r, r
	return nil
}

// entryName checks an archive name and returns it without a leading "./"
// or trailing "/".
func entryName(n string) (string, error) {
	if len(n) > MaxPath {
		return "", fmt.Errorf("%w: an entry name is longer than %d bytes", ErrLimit, MaxPath)
	}
	s := strings.TrimPrefix(n, "./")
	s = strings.TrimSuffix(s, "/")
	if s == "" || strings.HasPrefix(s, "/") || strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("%w: entry name %q is empty or absolute", ErrUnsafe, n)
	}
	for _, c := range strings.Split(s, "/") {
		if c == "" || c == "." || c == ".." {
			return "", fmt.Errorf("%w: entry name %q has an empty, . or .. component", ErrUnsafe, n)
		}
		if len(c) > MaxName {
			return "", fmt.Errorf("%w: a component of entry %q is longer than %d bytes", ErrLimit, n, MaxName)
		}
	}
	return s, nil
}

func checkType(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		return nil
	case tar.TypeLink:
		return fmt.Errorf("%w: %s is a hard link; hard links are not extracted", ErrUnsafe, hdr.Name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("%w: %s is a %s; device files and FIFOs are not extracted", ErrUnsafe, hdr.Name, typeWord(hdr.Typeflag))
	}
	return fmt.Errorf("%w: %s has the unsupported entry type %q", ErrUnsafe, hdr.Name, hdr.Typeflag)
}

func typeWord(t byte) string {
	switch t {
	case tar.TypeReg:
		return "file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("type %q", t)
}

func (x *extractor) dirPerm(hdr *tar.Header) fs.FileMode {
	return x.lim.perm(fs.FileMode(hdr.Mode)) | 0o700
}

func (x *extractor) entry(hdr *tar.Header, name, target string, r io.Reader) error {
	if dir := path.Dir(target); dir != "." {
		if err := x.mkdirAll(dir); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err := x.root.Mkdir(target, x.dirPerm(hdr))
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := x.root.Lstat(target); serr == nil && fi.IsDir() {
				return nil
			}
			return fmt.Errorf("%w: %s exists and is not a directory", ErrUnsafe, target)
		}
		if err != nil {
			return err
		}
		return x.own(target)
	case tar.TypeSymlink:
		if !linkStaysIn(name, hdr.Linkname) {
			return fmt.Errorf("%w: symbolic link %s -> %s leads outside the archive's top-level directory", ErrUnsafe, name, hdr.Linkname)
		}
		if fi, err := x.root.Lstat(target); err == nil {
			if fi.IsDir() {
				return fmt.Errorf("%w: %s exists and is a directory", ErrUnsafe, target)
			}
			if err := x.root.Remove(target); err != nil {
				return err
			}
		}
		if err := x.root.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
		return x.own(target)
	}
	if hdr.Size < 0 || hdr.Size > x.lim.maxBytes()-x.bytes {
		return fmt.Errorf("%w: entry %s of %d bytes would pass the bound of %d bytes", ErrLimit, name, hdr.Size, x.lim.maxBytes())
	}
	if fi, err := x.root.Lstat(target); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: %s exists and is a directory", ErrUnsafe, target)
	}
	tmp, f, err := createTemp(x.root, target)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			_ = x.root.Remove(tmp)
		}
	}()
	n, err := io.CopyN(f, r, hdr.Size)
	x.bytes += n
	if err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	startWriteback(f, 0, n)
	if err := f.Chmod(x.lim.perm(fs.FileMode(hdr.Mode))); err != nil {
		return err
	}
	if err := x.lim.chown(f); err != nil {
		return err
	}
	if syncEachFile {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", target, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	if err := x.root.Rename(tmp, target); err != nil {
		return err
	}
	ok = true
	return nil
}

// mkdirAll creates dir and the parents it lacks, which an archive without
// entries for them implies, each owned as the files are.
func (x *extractor) mkdirAll(dir string) error {
	var missing []string
	for d := dir; d != "."; d = path.Dir(d) {
		if _, err := x.root.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if err := x.root.MkdirAll(dir, x.lim.perm(0o755)|0o700); err != nil {
		return err
	}
	for _, d := range missing {
		if err := x.own(d); err != nil {
			return err
		}
	}
	return nil
}

// own gives name, a directory or a symbolic link the extraction created,
// to the owner the limits name, as files are given theirs (without
// following a link: a directory swapped for one meanwhile changes only
// the link).
func (x *extractor) own(name string) error {
	if x.lim.UID < 0 && x.lim.GID < 0 {
		return nil
	}
	return x.root.Lchown(name, x.lim.UID, x.lim.GID)
}

// createTemp creates a new file next to target, readable and writable by
// its owner only, with a random name that starts with ".<base>.tether-".
func createTemp(root *os.Root, target string) (string, *os.File, error) {
	var rnd [8]byte
	for range 10 {
		_, _ = rand.Read(rnd[:])
		name := path.Join(path.Dir(target), "."+path.Base(target)+".tether-"+hex.EncodeToString(rnd[:]))
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("create a temporary file next to %s: %w", target, err)
		}
		return name, f, nil
	}
	return "", nil, fmt.Errorf("create a temporary file next to %s: too many name clashes", target)
}
