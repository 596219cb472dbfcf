// halfclose-gvisor-agent: runs gVisor's netstack (as a Go library) on the TAP fd halfclose
// hands down (HALFCLOSE_TAP_FD) and executes socket calls that arrive as JSON lines on
// stdin, answering and reporting events on stdout. See docs/agent-protocol.md.
//
// gVisor runs its own goroutines: the TAP's reader (fdbased), the TCP processors, and
// its timers (Go runtime timers on the stack's clock), so the stack's timers fire on time
// whatever this loop does. The loop owns the fds and stdout: it executes each command the
// moment its line arrives and sweeps (state changes, parked calls, fd events) whenever the
// stack signals something, plus every sweepEvery for changes nothing signals.

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// sweepEvery is a safety net for state changes nothing signalled. Every change the suite
// makes has a signal: a command, a segment (the TCP probe), or the endpoint's waiter
// queue, which gVisor notifies when its timers end TIME_WAIT (connect.go
// timeWaitTimerExpired), FIN_WAIT_2 or a connection given up. Replies never wait for it;
// it is slow because 32 agents run at once.
const sweepEvery = 100 * time.Millisecond

// maxLine is the protocol's longest line, `\n` not counted.
const maxLine = 1 << 20

func main() {
	tapFD := -1
	if v, ok := os.LookupEnv("HALFCLOSE_TAP_FD"); ok {
		fd, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || fd < 0 {
			fatal(fmt.Sprintf("HALFCLOSE_TAP_FD=%q is not a file descriptor number", v))
		}
		if err := checkTap(fd); err != nil {
			fatal(err.Error())
		}
		tapFD = fd
	}
	ns, err := newNetstack(tapFD)
	if err != nil {
		fatal(err.Error())
	}
	c := newCalls(ns)
	out := bufio.NewWriter(os.Stdout)
	emit(out, hello())

	lines := make(chan input, 16)
	go readInput(os.Stdin, lines)
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case in, ok := <-lines:
			if !ok {
				return // EOF on stdin
			}
			// State changes come out before the reply of a command that may see them (a
			// `state` answer never runs ahead of its event).
			c.sweep()
			if !runLine(c, in, out) {
				return // quit
			}
		case <-c.wake:
		case <-tick.C:
		case e := <-ns.deviceFailed:
			fatal(fmt.Sprintf("the TAP device failed: %v", e))
		}
		c.sweep()
		flush(c, out)
	}
}

// input is one command line, or the news that a line went past maxLine.
type input struct {
	line     []byte
	overlong bool
}

// readInput splits stdin into lines; a line past maxLine is reported once and dropped
// up to its end without being held in memory.
func readInput(r io.Reader, lines chan<- input) {
	defer close(lines)
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	discarding := false
	for {
		chunk, err := br.ReadSlice('\n')
		complete := err == nil
		if complete {
			chunk = chunk[:len(chunk)-1]
		}
		if !discarding {
			if len(line)+len(chunk) > maxLine {
				line, discarding = nil, true
				lines <- input{overlong: true}
			} else {
				line = append(line, chunk...)
			}
		}
		if complete {
			if !discarding {
				lines <- input{line: line}
			}
			line, discarding = nil, false
			continue
		}
		if err != bufio.ErrBufferFull {
			return // EOF or a read error: the session is over
		}
	}
}

// runLine executes one line; false after `quit`.
func runLine(c *calls, in input, out *bufio.Writer) bool {
	if in.overlong {
		emit(out, replyErr(nil, fail("EPROTO", "a line longer than %d MiB (the protocol's limit); ignored", maxLine>>20)))
		return true
	}
	if strings.TrimSpace(string(in.line)) == "" {
		return true
	}
	req, hasID, err := parseLine(in.line)
	if err != nil {
		var id *uint64
		if hasID {
			id = &req.id
		}
		emit(out, replyErr(id, err))
		return true
	}
	c.execute(req)
	if req.cmd == "quit" {
		flush(c, out)
		return false
	}
	return true
}

func flush(c *calls, out *bufio.Writer) {
	for _, l := range c.out {
		emit(out, l)
	}
	c.out = c.out[:0]
}

// emit writes one protocol line. stdout carries nothing else; if halfclose has gone
// away there is nobody to serve, so exit quietly.
func emit(out *bufio.Writer, v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		fatal(fmt.Sprintf("encoding a line: %v", err))
	}
	b = append(b, '\n')
	if _, err := out.Write(b); err != nil {
		os.Exit(0)
	}
	if err := out.Flush(); err != nil {
		os.Exit(0)
	}
}

func fatal(message string) {
	fmt.Fprintf(os.Stderr, "halfclose-gvisor-agent: %s\n", message)
	os.Exit(2)
}
