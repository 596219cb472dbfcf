// Wire format between halfclose and the agent: one JSON object per line
// (docs/agent-protocol.md). Parsing goes over a generic map so that every
// error can name the field it is about, as the protocol asks ("field `fd` ...").

package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

const protocolVersion = 1

// protoError is an errno-style failure: the errno name travels on the wire,
// the message is for humans.
type protoError struct {
	errno   string
	message string
}

func (e *protoError) Error() string { return e.errno + ": " + e.message }

func fail(errno, format string, args ...any) *protoError {
	return &protoError{errno: errno, message: fmt.Sprintf(format, args...)}
}

func invalid(field, expected string) *protoError {
	return fail("EINVAL", "field `%s` must be %s", field, expected)
}

// request is one command line: its id and its fields.
type request struct {
	id  uint64
	cmd string
	f   fields
}

// parseLine reads one line into a request. The id is returned (hasID) whenever
// it could be read, so that even a bad command gets its reply.
func parseLine(line []byte) (req request, hasID bool, err *protoError) {
	var v any
	if e := json.Unmarshal(line, &v); e != nil {
		return req, false, fail("EPROTO", "malformed JSON: %v", e)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return req, false, fail("EPROTO", "malformed JSON: a line must be a JSON object")
	}
	f := fields(obj)
	id, ok := f.uintOf(obj["id"])
	if !ok {
		return req, false, invalid("id", "a non-negative integer")
	}
	req = request{id: id, f: f}
	cmd, err := f.str("cmd")
	if err != nil {
		return req, true, err
	}
	req.cmd = cmd
	return req, true, nil
}

// fields gives typed access to a command object, each error naming the field.
type fields map[string]any

func (f fields) get(name string) (any, *protoError) {
	v, ok := f[name]
	if !ok {
		return nil, fail("EINVAL", "missing field `%s`", name)
	}
	return v, nil
}

func (f fields) str(name string) (string, *protoError) {
	v, err := f.get(name)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid(name, "a string")
	}
	return s, nil
}

func (f fields) boolean(name string) (bool, *protoError) {
	v, err := f.get(name)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, invalid(name, "a boolean")
	}
	return b, nil
}

func (f fields) array(name string) ([]any, *protoError) {
	v, err := f.get(name)
	if err != nil {
		return nil, err
	}
	a, ok := v.([]any)
	if !ok {
		return nil, invalid(name, "an array")
	}
	return a, nil
}

// uintOf is a JSON number that is a non-negative integer (encoding/json gives float64).
func (fields) uintOf(v any) (uint64, bool) {
	n, ok := v.(float64)
	if !ok || n < 0 || n != float64(uint64(n)) || n > 1<<53 {
		return 0, false
	}
	return uint64(n), true
}

// optUint is an optional non-negative integer; null counts as absent.
func (f fields) optUint(name string, dflt uint64) (uint64, *protoError) {
	v, ok := f[name]
	if !ok || v == nil {
		return dflt, nil
	}
	n, ok := f.uintOf(v)
	if !ok {
		return 0, invalid(name, "a non-negative integer")
	}
	return n, nil
}

func (f fields) fd() (int, *protoError) {
	v, err := f.get("fd")
	if err != nil {
		return 0, err
	}
	n, ok := f.uintOf(v)
	if !ok {
		return 0, invalid("fd", "a non-negative integer")
	}
	if n > 1<<31 {
		return 0, fail("EBADF", "bad file descriptor %d", n)
	}
	return int(n), nil
}

func (f fields) sockaddr(name string) (netip.AddrPort, *protoError) {
	s, err := f.str(name)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap, e := netip.ParseAddrPort(s)
	if e != nil || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, invalid(name, "\"ip:port\" (IPv6 as \"[ip]:port\")")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func (f fields) hexData(name string) ([]byte, *protoError) {
	s, err := f.str(name)
	if err != nil {
		return nil, err
	}
	b, e := hex.DecodeString(s)
	if e != nil {
		return nil, invalid(name, "a string of hex digit pairs")
	}
	return b, nil
}

func parseMAC(s string) ([]byte, *protoError) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return nil, invalid("mac", "six colon-separated hex bytes")
	}
	mac := make([]byte, 6)
	for i, p := range parts {
		b, err := strconv.ParseUint(p, 16, 8)
		if len(p) != 2 || err != nil {
			return nil, invalid("mac", "six colon-separated hex bytes")
		}
		mac[i] = byte(b)
	}
	return mac, nil
}

func parseCIDR(v any, field string) (netip.Prefix, *protoError) {
	s, ok := v.(string)
	if ok {
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Zone() == "" {
			return p, nil
		}
	}
	return netip.Prefix{}, invalid(field, "a list of \"ip/prefix\" strings")
}

// route is one `routes` entry; an invalid dst means the default route.
type route struct {
	dst netip.Prefix
	via netip.Addr
}

func parseRoute(v any) (route, *protoError) {
	obj, ok := v.(map[string]any)
	if !ok {
		return route{}, invalid("routes", "a list of {\"dst\",\"via\"} objects")
	}
	f := fields(obj)
	s, err := f.str("via")
	if err != nil {
		return route{}, err
	}
	via, e := netip.ParseAddr(s)
	if e != nil {
		return route{}, invalid("via", "an IP address")
	}
	r := route{via: via.Unmap()}
	switch d := obj["dst"].(type) {
	case nil:
	case string:
		if d != "default" {
			p, e := netip.ParsePrefix(d)
			if e != nil {
				return route{}, invalid("dst", "\"ip/prefix\" or \"default\"")
			}
			r.dst = p
		}
	default:
		return route{}, invalid("dst", "\"ip/prefix\" or \"default\"")
	}
	return r, nil
}

// ---- Lines the agent writes ----

// hello lists what the agent really does; halfclose skips what it lacks.
func hello() map[string]any {
	return map[string]any{"hello": map[string]any{
		"protocol": protocolVersion,
		"agent":    "halfclose-gvisor-agent",
		"stack":    "gvisor netstack " + gvisorVersion,
		"calls": []string{"socket", "bind", "listen", "accept", "connect", "write",
			"read", "shutdown", "close", "setsockopt", "state"},
		"shutdown": []string{"rd", "wr", "rdwr"},
		"sockopts": []string{"linger", "linger-timeout", "nodelay", "keepalive"},
		"events":   []string{"state", "readable", "reset"},
		// Protocol 1 has no command that reads timers.
		"timers":       false,
		"time_wait_ms": timeWait.Milliseconds(),
	}}
}

func replyOK(id uint64, v any) map[string]any {
	return map[string]any{"id": id, "ok": v}
}

// replyErr answers with an errno; a nil id is written as null (a line that had none).
func replyErr(id *uint64, e *protoError) map[string]any {
	var idv any
	if id != nil {
		idv = *id
	}
	return map[string]any{"id": idv, "error": e.errno, "message": e.message}
}

func stateEvent(local, remote netip.AddrPort, from, to string, tns int64) map[string]any {
	return map[string]any{"event": "state", "local": local.String(), "remote": remote.String(),
		"from": from, "to": to, "t_ns": tns}
}

func fdEvent(kind string, fd int) map[string]any {
	return map[string]any{"event": kind, "fd": fd}
}
