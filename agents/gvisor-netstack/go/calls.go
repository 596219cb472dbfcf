// BSD socket calls over gVisor's tcpip.Endpoint, as runsc's sentry makes them
// (pkg/sentry/socket/netstack): an fd is one endpoint and its waiter queue; blocking
// calls (accept, connect, read, a lingering close) are parked and finished by a later
// sweep, which every notification from the stack triggers.
//
// Closed endpoints are orphans that gVisor itself takes through FIN_WAIT/LAST_ACK/
// TIME_WAIT; the stack's RegisteredEndpoints() still lists them, and State() gives the
// state of each, so `state` and the state events see orphans as sock_diag does on Linux.

package main

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/syserr"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// sock is what an fd refers to.
type sock struct {
	ep       tcpip.Endpoint
	wq       *waiter.Queue
	v4       bool
	listener bool
	// hup is set by the waiter queue when the endpoint signals EventHUp or EventErr
	// (what a lingering close waits for, as the sentry's Release does).
	hup          atomic.Bool
	readableSent bool
	resetSent    bool
	// synced: the connection got past its handshake, so reaching the error state means
	// the stack lost it (a refused connect answers connect instead).
	synced bool
}

type waitKind int

const (
	waitAccept waitKind = iota
	waitConnect
	waitRead
	waitLinger
)

type pending struct {
	id       uint64
	fd       int
	kind     waitKind
	max      int
	s        *sock          // a lingering close's socket (its fd is gone already)
	addr     netip.AddrPort // a connect's destination
	deadline time.Time      // a lingering close's end
}

// conn is what the sweep last saw of one connection endpoint.
type conn struct {
	local, remote netip.AddrPort
	state         string
}

// Ephemeral ports as docs/agent-protocol.md has them (gVisor's own default starts at 16000).
const ephemeralFirst, ephemeralLast = 49152, 65535

type calls struct {
	ns      *netstack
	fds     map[int]*sock
	nextFD  int
	pending []*pending
	conns   map[tcpip.Endpoint]*conn
	// wake asks the main loop for a sweep; poke never blocks (it runs inside the stack).
	wake chan struct{}
	// synRecv: connections whose SYN-ACK went out (the stack's goroutines write it), when.
	synRecvMu sync.Mutex
	synRecv   map[[2]netip.AddrPort]time.Time
	out       []map[string]any
}

func newCalls(ns *netstack) *calls {
	c := &calls{ns: ns, fds: map[int]*sock{}, nextFD: 3, conns: map[tcpip.Endpoint]*conn{},
		wake: make(chan struct{}, 1)}
	_ = ns.s.SetPortRange(ephemeralFirst, ephemeralLast)
	c.synRecv = map[[2]netip.AddrPort]time.Time{}
	ns.onFrame = c.poke
	ns.onSynAck = func(l, r netip.AddrPort, at time.Time) {
		c.synRecvMu.Lock()
		c.synRecv[[2]netip.AddrPort{l, r}] = at
		c.synRecvMu.Unlock()
	}
	// Every segment an endpoint processes may change its state: sweep after it.
	ns.s.AddTCPProbe(func(*stack.TCPEndpointState) { c.poke() })
	return c
}

func (c *calls) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// errnoOf names the Linux errno the sentry turns a netstack error into.
func errnoOf(err tcpip.Error) *protoError {
	e := syserr.TranslateNetstackError(err)
	return fail(unix.ErrnoName(unix.Errno(e.ToLinux())), "%s", err)
}

func ebadf(fd int) *protoError { return fail("EBADF", "bad file descriptor %d", fd) }

func (c *calls) answer(id uint64, v any, err *protoError) {
	if err != nil {
		c.out = append(c.out, replyErr(&id, err))
	} else {
		c.out = append(c.out, replyOK(id, v))
	}
}

// execute runs one command; blocking ones are parked unless they can finish now.
func (c *calls) execute(req request) {
	v, err := c.dispatch(req)
	if err == errParked {
		c.complete()
		return
	}
	c.answer(req.id, v, err)
}

// errParked marks a call that answers later.
var errParked = &protoError{errno: "parked"}

func (c *calls) dispatch(req request) (any, *protoError) {
	f := req.f
	switch req.cmd {
	case "configure":
		return nil, c.configure(f)
	case "socket":
		return c.socket(f)
	case "bind":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) { return c.bind(f, s) })
	case "listen":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) { return c.listen(f, s) })
	case "accept":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) {
			if !s.listener {
				return nil, fail("EINVAL", "socket is not listening")
			}
			return c.park(&pending{id: req.id, fd: fd, kind: waitAccept})
		})
	case "connect":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) { return c.connect(req.id, fd, f, s) })
	case "write":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) { return c.write(f, s) })
	case "read":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) {
			max, err := f.optUint("max", 65536)
			if err != nil {
				return nil, err
			}
			return c.park(&pending{id: req.id, fd: fd, kind: waitRead, max: int(min64(max, 1<<20))})
		})
	case "shutdown":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) { return c.shutdown(f, s) })
	case "close":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) { return c.close(req.id, fd, s) })
	case "setsockopt":
		return c.withSock(f, func(fd int, s *sock) (any, *protoError) { return c.setsockopt(f, s) })
	case "state":
		return c.stateCmd(f)
	case "quit":
		return nil, nil
	}
	return nil, fail("ENOSYS", "unknown command `%s`", req.cmd)
}

func min64(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

func (c *calls) withSock(f fields, do func(int, *sock) (any, *protoError)) (any, *protoError) {
	fd, err := f.fd()
	if err != nil {
		return nil, err
	}
	s, ok := c.fds[fd]
	if !ok {
		return nil, ebadf(fd)
	}
	return do(fd, s)
}

func (c *calls) park(p *pending) (any, *protoError) {
	c.pending = append(c.pending, p)
	return nil, errParked
}

func (c *calls) configure(f fields) *protoError {
	ms, err := f.str("mac")
	if err != nil {
		return err
	}
	mac, err := parseMAC(ms)
	if err != nil {
		return err
	}
	list, err := f.array("addrs")
	if err != nil {
		return err
	}
	var addrs []netip.Prefix
	for _, v := range list {
		p, err := parseCIDR(v, "addrs")
		if err != nil {
			return err
		}
		addrs = append(addrs, p)
	}
	var routes []route
	if v, ok := f["routes"]; ok && v != nil {
		list, err := f.array("routes")
		if err != nil {
			return err
		}
		for _, v := range list {
			r, err := parseRoute(v)
			if err != nil {
				return err
			}
			routes = append(routes, r)
		}
	}
	return c.ns.configure(mac, addrs, routes)
}

func (c *calls) socket(f fields) (any, *protoError) {
	fam, err := f.str("family")
	if err != nil {
		return nil, err
	}
	if fam != "ipv4" && fam != "ipv6" {
		return nil, invalid("family", "\"ipv4\" or \"ipv6\"")
	}
	s := &sock{wq: &waiter.Queue{}, v4: fam == "ipv4"}
	proto := ipv6.ProtocolNumber
	if s.v4 {
		proto = ipv4.ProtocolNumber
	}
	ep, e := c.ns.s.NewEndpoint(tcp.ProtocolNumber, proto, s.wq)
	if e != nil {
		return nil, errnoOf(e)
	}
	s.ep = ep
	fd := c.adopt(s)
	return fd, nil
}

// adopt gives a socket its fd and has its waiter queue ask for a sweep on every event,
// for as long as the endpoint lives (after close too: an orphan's changes are reported).
func (c *calls) adopt(s *sock) int {
	entry := waiter.NewFunctionEntry(waiter.EventIn|waiter.EventOut|waiter.EventHUp|waiter.EventErr,
		func(m waiter.EventMask) {
			if m&(waiter.EventHUp|waiter.EventErr) != 0 {
				s.hup.Store(true)
			}
			c.poke()
		})
	s.wq.EventRegister(&entry)
	fd := c.nextFD
	c.nextFD++
	c.fds[fd] = s
	return fd
}

func familyCheck(s *sock, a netip.AddrPort) *protoError {
	if a.Addr().Is4() != s.v4 {
		return fail("EAFNOSUPPORT", "address family does not match the socket")
	}
	return nil
}

func (c *calls) bind(f fields, s *sock) (any, *protoError) {
	a, err := f.sockaddr("addr")
	if err != nil {
		return nil, err
	}
	if err := familyCheck(s, a); err != nil {
		return nil, err
	}
	if e := s.ep.Bind(fullAddr(a)); e != nil {
		if _, ok := e.(*tcpip.ErrAlreadyBound); ok {
			return nil, fail("EINVAL", "socket is already bound")
		}
		return nil, errnoOf(e)
	}
	return 0, nil
}

func (c *calls) listen(f fields, s *sock) (any, *protoError) {
	backlog, err := f.optUint("backlog", 1)
	if err != nil {
		return nil, err
	}
	if e := s.ep.Listen(int(min64(backlog, 1<<16))); e != nil {
		return nil, errnoOf(e)
	}
	s.listener = true
	return 0, nil
}

func (c *calls) connect(id uint64, fd int, f fields, s *sock) (any, *protoError) {
	a, err := f.sockaddr("addr")
	if err != nil {
		return nil, err
	}
	if err := familyCheck(s, a); err != nil {
		return nil, err
	}
	if !c.ns.configured {
		return nil, fail("ENETDOWN", "the interface is not configured yet")
	}
	switch e := s.ep.Connect(fullAddr(a)); e.(type) {
	case nil:
		return 0, nil
	case *tcpip.ErrConnectStarted:
		return c.park(&pending{id: id, fd: fd, kind: waitConnect, addr: a})
	case *tcpip.ErrNoPortAvailable:
		// As the sentry: TCP says EADDRNOTAVAIL when no ephemeral port is left.
		return nil, fail("EADDRNOTAVAIL", "%s", e)
	default:
		return nil, errnoOf(e)
	}
}

func (c *calls) write(f fields, s *sock) (any, *protoError) {
	data, err := f.hexData("data")
	if err != nil {
		return nil, err
	}
	n, e := s.ep.Write(bytes.NewReader(data), tcpip.WriteOptions{})
	if e != nil {
		return nil, errnoOf(e)
	}
	return n, nil
}

func (c *calls) shutdown(f fields, s *sock) (any, *protoError) {
	how, err := f.str("how")
	if err != nil {
		return nil, err
	}
	flags := map[string]tcpip.ShutdownFlags{
		"rd": tcpip.ShutdownRead, "wr": tcpip.ShutdownWrite,
		"rdwr": tcpip.ShutdownRead | tcpip.ShutdownWrite,
	}[how]
	if flags == 0 {
		return nil, invalid("how", "\"rd\", \"wr\" or \"rdwr\"")
	}
	if e := s.ep.Shutdown(flags); e != nil {
		return nil, errnoOf(e)
	}
	return 0, nil
}

// close drops the fd and closes the endpoint, which gVisor keeps as an orphan. With
// SO_LINGER and a timeout the reply waits, as the sentry's Release does, for the endpoint
// to signal EventHUp/EventErr or the timeout to pass; with SO_LINGER 0, gVisor's Close
// resets the connection itself (endpoint.go closeLocked).
func (c *calls) close(id uint64, fd int, s *sock) (any, *protoError) {
	delete(c.fds, fd)
	for _, p := range c.pending {
		if p.fd == fd && p.kind != waitLinger {
			p.fd = -1 // answered EBADF by complete()
		}
	}
	s.ep.Close()
	if l := s.ep.SocketOptions().GetLinger(); l.Enabled && l.Timeout > 0 {
		time.AfterFunc(l.Timeout, c.poke)
		return c.park(&pending{id: id, fd: -1, kind: waitLinger, s: s, deadline: time.Now().Add(l.Timeout)})
	}
	c.complete()
	return 0, nil
}

func (c *calls) setsockopt(f fields, s *sock) (any, *protoError) {
	opt, err := f.str("opt")
	if err != nil {
		return nil, err
	}
	ops := s.ep.SocketOptions()
	switch opt {
	case "linger":
		on, err := f.boolean("on")
		if err != nil {
			return nil, err
		}
		secs, err := f.optUint("secs", 0)
		if err != nil {
			return nil, err
		}
		ops.SetLinger(tcpip.LingerOption{Enabled: on, Timeout: time.Duration(min64(secs, 1<<20)) * time.Second})
	case "nodelay":
		v, err := f.boolean("value")
		if err != nil {
			return nil, err
		}
		ops.SetDelayOption(!v)
	case "keepalive":
		v, err := f.boolean("value")
		if err != nil {
			return nil, err
		}
		ops.SetKeepAlive(v)
		if secs, err := f.optUint("secs", 0); err != nil {
			return nil, err
		} else if secs > 0 {
			idle := tcpip.KeepaliveIdleOption(time.Duration(min64(secs, 1<<20)) * time.Second)
			if e := s.ep.SetSockOpt(&idle); e != nil {
				return nil, errnoOf(e)
			}
		}
	default:
		return nil, fail("ENOSYS", "unsupported socket option `%s`", opt)
	}
	return 0, nil
}

func (c *calls) stateCmd(f fields) (any, *protoError) {
	local, err := f.sockaddr("local")
	if err != nil {
		return nil, err
	}
	remote, err := f.sockaddr("remote")
	if err != nil {
		return nil, err
	}
	found := "CLOSED"
	c.eachConn(func(ep tcpip.Endpoint, l, r netip.AddrPort, state string) {
		// A TIME_WAIT endpoint and a new connection may share the 4-tuple for a moment
		// (a SYN reopening it): the live one is the answer.
		if l == local && r == remote && state != "CLOSED" && (found == "CLOSED" || found == "TIME_WAIT") {
			found = state
		}
	})
	return map[string]any{"state": found}, nil
}

// ---- After every command and every notification ----

func (c *calls) sweep() {
	c.trackStates()
	c.complete()
	c.notifyFds()
}

// eachConn calls fn for every registered endpoint that is a connection (it has a peer),
// orphans included, with its state's Linux name.
func (c *calls) eachConn(fn func(ep tcpip.Endpoint, local, remote netip.AddrPort, state string)) {
	for _, te := range c.ns.s.RegisteredEndpoints() {
		ep, ok := te.(tcpip.Endpoint)
		if !ok {
			continue
		}
		info, ok := ep.Info().(*stack.TransportEndpointInfo)
		if !ok || info.ID.RemotePort == 0 {
			continue // listening, or bound and not connected
		}
		name, ok := stateName(tcp.EndpointState(ep.State()))
		if !ok {
			continue
		}
		fn(ep, addrPort(info.ID.LocalAddress, info.ID.LocalPort), addrPort(info.ID.RemoteAddress, info.ID.RemotePort), name)
	}
}

// stateName is a state as Linux names it; false for states that are no connection.
func stateName(s tcp.EndpointState) (string, bool) {
	switch s {
	case tcp.StateConnecting, tcp.StateSynSent:
		return "SYN_SENT", true
	case tcp.StateSynRecv:
		return "SYN_RECV", true
	case tcp.StateEstablished:
		return "ESTABLISHED", true
	case tcp.StateFinWait1:
		return "FIN_WAIT_1", true
	case tcp.StateFinWait2:
		return "FIN_WAIT_2", true
	case tcp.StateTimeWait:
		return "TIME_WAIT", true
	case tcp.StateCloseWait:
		return "CLOSE_WAIT", true
	case tcp.StateLastAck:
		return "LAST_ACK", true
	case tcp.StateClosing:
		return "CLOSING", true
	case tcp.StateClose, tcp.StateError:
		return "CLOSED", true
	}
	return "", false
}

// trackStates reports every state change since the last sweep; a connection that is no
// longer registered has gone to CLOSED.
func (c *calls) trackStates() {
	now := time.Now().UnixNano()
	seen := map[tcpip.Endpoint]bool{}
	c.eachConn(func(ep tcpip.Endpoint, l, r netip.AddrPort, state string) {
		seen[ep] = true
		was, ok := c.conns[ep]
		if !ok {
			was = &conn{local: l, remote: r, state: "CLOSED"}
			c.conns[ep] = was
			// Its SYN-ACK went out since the last sweep: it passed through SYN_RECV.
			if at, sent := c.synRecvSeen(l, r); sent && state != "SYN_RECV" {
				c.out = append(c.out, stateEvent(l, r, "CLOSED", "SYN_RECV", at.UnixNano()))
				was.state = "SYN_RECV"
			}
		}
		if was.state != state {
			c.out = append(c.out, stateEvent(l, r, was.state, state, now))
			was.state = state
		}
	})
	for ep, cn := range c.conns {
		if !seen[ep] {
			if cn.state != "CLOSED" {
				c.out = append(c.out, stateEvent(cn.local, cn.remote, cn.state, "CLOSED", now))
			}
			delete(c.conns, ep)
		}
	}
}

// synRecvSeen says whether the SYN-ACK of that connection went out, and when, and forgets
// it. A sweep may run between the SYN-ACK and the endpoint's turning up in the stack's list,
// so an observation waits for its connection (those older than synRecvKeep are dropped:
// a handshake that never showed up).
func (c *calls) synRecvSeen(l, r netip.AddrPort) (time.Time, bool) {
	c.synRecvMu.Lock()
	defer c.synRecvMu.Unlock()
	key := [2]netip.AddrPort{l, r}
	at, ok := c.synRecv[key]
	delete(c.synRecv, key)
	for k, t := range c.synRecv {
		if time.Since(t) > synRecvKeep {
			delete(c.synRecv, k)
		}
	}
	return at, ok
}

const synRecvKeep = 10 * time.Second

// complete answers the parked calls whose condition now holds.
func (c *calls) complete() {
	kept := c.pending[:0]
	for _, p := range c.pending {
		v, err := c.try(p)
		if err == errParked {
			kept = append(kept, p)
			continue
		}
		c.answer(p.id, v, err)
	}
	c.pending = kept
}

func (c *calls) try(p *pending) (any, *protoError) {
	if p.kind == waitLinger {
		if p.s.hup.Load() || !time.Now().Before(p.deadline) {
			return 0, nil
		}
		return nil, errParked
	}
	s, ok := c.fds[p.fd]
	if !ok {
		return nil, ebadf(p.fd)
	}
	switch p.kind {
	case waitAccept:
		return c.tryAccept(s)
	case waitConnect:
		return tryConnect(s, p.addr)
	default:
		return tryRead(s, p.max)
	}
}

func (c *calls) tryAccept(s *sock) (any, *protoError) {
	ep, wq, e := s.ep.Accept(nil)
	switch e.(type) {
	case nil:
	case *tcpip.ErrWouldBlock:
		return nil, errParked
	default:
		return nil, errnoOf(e)
	}
	return c.adopt(&sock{ep: ep, wq: wq, v4: s.v4}), nil
}

// tryConnect finishes a connect as the sentry does: once the endpoint is writable (or
// failed), Connect again gives the outcome.
func tryConnect(s *sock, addr netip.AddrPort) (any, *protoError) {
	if s.ep.Readiness(waiter.WritableEvents|waiter.EventHUp|waiter.EventErr) == 0 {
		return nil, errParked
	}
	switch e := s.ep.Connect(fullAddr(addr)); e.(type) {
	case nil:
		return 0, nil
	case *tcpip.ErrConnectStarted, *tcpip.ErrAlreadyConnecting:
		return nil, errParked
	default:
		return nil, errnoOf(e)
	}
}

func tryRead(s *sock, max int) (any, *protoError) {
	if max == 0 {
		return map[string]any{"data": ""}, nil
	}
	var buf bytes.Buffer
	res, e := s.ep.Read(&tcpip.LimitedWriter{W: &buf, N: int64(max)}, tcpip.ReadOptions{})
	switch e.(type) {
	case nil:
	case *tcpip.ErrWouldBlock:
		return nil, errParked
	case *tcpip.ErrClosedForReceive:
		return map[string]any{"data": ""}, nil // EOF, as the sentry reads it
	default:
		return nil, errnoOf(e)
	}
	if res.Count == 0 {
		return nil, errParked
	}
	// Receive-buffer moderation learns from what the application reads (as the sentry).
	s.ep.ModerateRecvBuf(res.Count)
	// Armed again once everything buffered has been read.
	if !readable(s.ep, tcp.EndpointState(s.ep.State())) {
		s.readableSent = false
	}
	return map[string]any{"data": hex.EncodeToString(buf.Bytes())}, nil
}

// notifyFds emits `readable` once per batch of data (or EOF) and `reset` once per
// connection that went to the error state without the application's doing.
func (c *calls) notifyFds() {
	for fd, s := range c.fds {
		if s.listener {
			continue
		}
		st := tcp.EndpointState(s.ep.State())
		s.synced = s.synced || synchronized(st)
		if st == tcp.StateError && !s.resetSent && s.synced {
			s.resetSent = true
			c.out = append(c.out, fdEvent("reset", fd))
		}
		if !s.readableSent && readable(s.ep, st) {
			s.readableSent = true
			c.out = append(c.out, fdEvent("readable", fd))
		}
	}
}

// synchronized: a state after the handshake, before the end.
func synchronized(st tcp.EndpointState) bool {
	switch st {
	case tcp.StateEstablished, tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateCloseWait,
		tcp.StateClosing, tcp.StateLastAck, tcp.StateTimeWait:
		return true
	}
	return false
}

// readable: data or the peer's FIN to read. gVisor says "ready for anything" once closed
// or in error; a reset is announced by its own event, not as readable.
func readable(ep tcpip.Endpoint, st tcp.EndpointState) bool {
	switch st {
	case tcp.StateError, tcp.StateClose, tcp.StateConnecting, tcp.StateSynSent, tcp.StateSynRecv,
		tcp.StateInitial, tcp.StateBound, tcp.StateListen:
		return false
	}
	return ep.Readiness(waiter.ReadableEvents) != 0
}
