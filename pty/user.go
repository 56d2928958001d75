//go:build !windows

package pty

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// passwdFile is the passwd database.
const passwdFile = "/etc/passwd"

// maxPasswdSize bounds how much of the passwd database is read.
const maxPasswdSize = 4 << 20

// Default PATHs of a session's environment.
const (
	rootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	userPath = "/usr/local/bin:/usr/bin:/bin"
)

// passwdEntry is one line of the passwd database.
type passwdEntry struct {
	name        string
	uid, gid    uint32
	home, shell string
}

// parsePasswd returns the first entry of r for which match is true. Lines
// that do not have seven fields or numeric IDs are skipped.
func parsePasswd(r io.Reader, match func(passwdEntry) bool) (passwdEntry, bool) {
	sc := bufio.NewScanner(io.LimitReader(r, maxPasswdSize))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] == "" {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5], shell: f[6]}
		if match(e) {
			return e, true
		}
	}
	return passwdEntry{}, false
}

// lookupPasswd finds a user by name, or by numeric uid when name is a number.
func lookupPasswd(name string) (passwdEntry, bool) {
	f, err := os.Open(passwdFile)
	if err != nil {
		return passwdEntry{}, false
	}
	defer f.Close()
	uid, numErr := strconv.ParseUint(name, 10, 32)
	if e, ok := parsePasswd(f, func(e passwdEntry) bool { return e.name == name }); ok {
		return e, true
	}
	if numErr != nil {
		return passwdEntry{}, false
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return passwdEntry{}, false
	}
	return parsePasswd(f, func(e passwdEntry) bool { return e.uid == uint32(uid) })
}

// account is who a session runs as.
type account struct {
	passwdEntry
	groups []uint32
	// cred is set when the child must switch to this user.
	cred *syscall.Credential
}

// resolveAccount finds the account for the configured user ("" = the
// agent's own user).
func resolveAccount(configured string) (account, error) {
	self := uint32(os.Geteuid())
	if configured == "" {
		e, ok := lookupPasswd(strconv.FormatUint(uint64(self), 10))
		if !ok || e.uid != self {
			// An agent user without a passwd entry (common on small
			// images): a minimal account.
			e = passwdEntry{name: strconv.FormatUint(uint64(self), 10), uid: self, gid: uint32(os.Getegid()), home: "/"}
		}
		return account{passwdEntry: e}, nil
	}
	e, ok := lookupPasswd(configured)
	if !ok {
		return account{}, fmt.Errorf("pty: the configured user %q is not in %s on the device; set pty.user to an existing user", configured, passwdFile)
	}
	if e.uid == self {
		return account{passwdEntry: e}, nil
	}
	if self != 0 {
		return account{}, fmt.Errorf("pty: the agent runs as uid %d, not root, so it cannot start sessions as %q; run the agent as root or clear pty.user", self, configured)
	}
	a := account{passwdEntry: e, groups: supplementaryGroups(e)}
	a.cred = &syscall.Credential{Uid: e.uid, Gid: e.gid, Groups: a.groups}
	return a, nil
}

// supplementaryGroups lists the groups of e (its primary group included).
func supplementaryGroups(e passwdEntry) []uint32 {
	groups := []uint32{e.gid}
	u, err := user.LookupId(strconv.FormatUint(uint64(e.uid), 10))
	if err != nil {
		return groups
	}
	ids, err := u.GroupIds()
	if err != nil {
		return groups
	}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err == nil && uint32(g) != e.gid {
			groups = append(groups, uint32(g))
		}
	}
	return groups
}

// shellFor picks the login shell: the configured one, the account's, or
// /bin/sh.
func shellFor(configured string, a account) string {
	switch {
	case configured != "":
		return configured
	case a.shell != "":
		return a.shell
	}
	return "/bin/sh"
}

// environment builds a session's environment from scratch; nothing of the
// agent's own environment leaks in except LANG.
func environment(a account, shell, term string) []string {
	if term == "" {
		term = "xterm-256color"
	}
	env := []string{
		"TERM=" + term,
		"HOME=" + a.home,
		"USER=" + a.name,
		"LOGNAME=" + a.name,
		"SHELL=" + shell,
		"PATH=" + sessionPath(a),
	}
	if lang, ok := os.LookupEnv("LANG"); ok && lang != "" {
		env = append(env, "LANG="+lang)
	}
	return env
}

// sessionPath is the PATH of a session run as a.
func sessionPath(a account) string {
	if a.uid == 0 {
		return rootPath
	}
	return userPath
}

// workDir is the account's home when it is a directory, else "/".
func workDir(a account) string {
	if a.home != "" {
		if fi, err := os.Stat(a.home); err == nil && fi.IsDir() {
			return a.home
		}
	}
	return "/"
}

// lookPath resolves name against the session's PATH (not the agent's).
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("pty: command %q not found in PATH %s on the device; give its absolute path", name, path)
}
