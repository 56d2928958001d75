//go:build !windows

package pty

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// maxStatSize bounds a read of /proc/<pid>/stat.
const maxStatSize = 4096

// killRounds bounds how often killSession scans for processes that were
// forked while it was killing.
const killRounds = 10

// killSession sends sig to the process group pgid and to every live
// process whose session ID is sid (the session leader's pid), including
// background jobs in other process groups of that session. Processes that
// left the session with setsid are not touched.
func killSession(sid int, sig syscall.Signal) {
	if sid <= 1 {
		return
	}
	_ = syscall.Kill(-sid, sig)
	for range killRounds {
		pids := sessionMembers(sid)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
		if sig != syscall.SIGKILL {
			return
		}
	}
}

// sessionMembers lists the live (not zombie) processes of session sid.
func sessionMembers(sid int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil
	}
	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 1 {
			continue
		}
		st, ok := readStat(pid)
		if ok && st.session == sid && st.state != 'Z' && st.state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat holds the fields of /proc/<pid>/stat that we use.
type procStat struct {
	state   byte
	ppid    int
	pgrp    int
	session int
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	defer f.Close()
	buf := make([]byte, maxStatSize)
	n, _ := f.Read(buf)
	return parseStat(buf[:n])
}

// parseStat parses "pid (comm) state ppid pgrp session ...". comm may hold
// spaces and parentheses, so the fields start after the last ')'.
func parseStat(b []byte) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 4 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	sess, err3 := strconv.Atoi(string(f[3]))
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp, session: sess}, true
}
