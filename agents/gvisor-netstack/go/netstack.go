// gVisor's netstack on the inherited TAP fd: the stack as runsc's sandbox network builds
// it, the NIC on the fd (fdbased), addresses and routes from `configure`, and the timer
// constants halfclose's timer profile for gVisor is taken from.

package main

import (
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// gvisorVersion is the Debian package's snapshot of gVisor (golang-gvisor-gvisor-dev
// 0.0~20221219.0), the sources this agent was written against.
const gvisorVersion = "20221219"

// The timers halfclose's profile for gVisor (src/ timer profile "gvisor") relies on, as
// gVisor's sources define them (pkg/tcpip/transport/tcp/):
//   - TIME_WAIT: protocol.go DefaultTCPTimeWaitTimeout = 60 s, the stack-wide
//     TCPTimeWaitTimeoutOption's default (connect.go getTimeWaitDuration), left as is;
//   - FIN_WAIT_2 of an orphan: protocol.go DefaultTCPLingerTimeout = 60 s (the endpoint's
//     tcpLingerTimeout, armed by endpoint.go closeNoShutdownLocked);
//   - RTO: snd.go MinRTO = 200 ms, MaxRTO = 120 s; connect.go InitialRTO = 1 s for the SYN
//     and SYN-ACK. snd.go updateRTO is RFC 6298's RTO = SRTT + 4·RTTVAR, clamped to
//     [MinRTO, MaxRTO] (clamped, not added as Linux does); a timeout doubles it
//     (snd.go retransmitTimerExpired);
//   - no delayed ACK timer: rcv.go sends an ACK for each segment it accepts
//     (snd.sendAck), batching only segments already queued (connect.go maxSegmentsPerWake);
//   - how they fire: every TCP timer is a tcpip.Clock timer, i.e. time.AfterFunc on the
//     stack's StdClock (timer.go; pkg/tcpip/stdclock.go): a Go runtime timer that fires
//     when due, no wheel or tick rounds it.
const (
	timeWait      = tcp.DefaultTCPTimeWaitTimeout
	finWait2      = tcp.DefaultTCPLingerTimeout
	rtoMin        = tcp.MinRTO
	rtoInitial    = tcp.InitialRTO
	rtoMax        = tcp.MaxRTO
	nicID         = tcpip.NICID(1)
	ipMTU         = 1500
	stackDefaults = "runsc's sandbox network (runsc/boot/loader.go newEmptySandboxNetworkStack)"
)

var _ = []time.Duration{finWait2, rtoMin, rtoInitial, rtoMax}

// newStack builds the stack as runsc does for --network=sandbox: IPv4, IPv6, ARP, TCP,
// SACK and receive-buffer moderation on, TTL 64.
func newStack() (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &moderate} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return nil, fmt.Errorf("setting %T: %s", opt, err)
		}
	}
	ttl := tcpip.DefaultTTLOption(64)
	for _, p := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
		if err := s.SetNetworkProtocolOption(p, &ttl); err != nil {
			return nil, fmt.Errorf("setting the TTL: %s", err)
		}
	}
	return s, nil
}

// checkTap makes sure fd is an open TAP device without packet-info headers; the error
// says what it is instead.
func checkTap(fd int) error {
	switch fd {
	case 0:
		return fmt.Errorf("HALFCLOSE_TAP_FD=0 is standard input, not a TAP device")
	case 1:
		return fmt.Errorf("HALFCLOSE_TAP_FD=1 is standard output, not a TAP device")
	case 2:
		return fmt.Errorf("HALFCLOSE_TAP_FD=2 is standard error, not a TAP device")
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return fmt.Errorf("HALFCLOSE_TAP_FD=%d: no such open file descriptor", fd)
	}
	var req [unix.IFNAMSIZ + 64]byte
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNGETIFF, uintptr(unsafe.Pointer(&req[0])))
	if errno != 0 {
		return fmt.Errorf("HALFCLOSE_TAP_FD=%d is not a TAP device (TUNGETIFF: %v)", fd, errno)
	}
	flags := *(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ]))
	if flags&unix.IFF_TAP == 0 {
		return fmt.Errorf("HALFCLOSE_TAP_FD=%d is a TUN device (IP packets); the agent needs a TAP", fd)
	}
	if flags&unix.IFF_NO_PI == 0 {
		return fmt.Errorf("HALFCLOSE_TAP_FD=%d: the TAP device has packet-info headers (IFF_NO_PI unset)", fd)
	}
	return nil
}

// netstack is the stack and, once configured, its one NIC on the TAP.
type netstack struct {
	s          *stack.Stack
	tapFD      int // -1: none
	configured bool
	mac        tcpip.LinkAddress
	addrs      []netip.Prefix
	// deviceFailed receives the error when reading the TAP fails.
	deviceFailed chan error
	// onFrame is called after every frame the NIC sends or receives, onSynAck for every
	// SYN-ACK it sends (see watchedLink).
	onFrame  func()
	onSynAck func(local, remote netip.AddrPort, at time.Time)
}

// watchedLink is the TAP's link endpoint with a call after every frame that goes out or
// comes in, so that the agent sweeps the connections' states then.
//
// One state is too short for any sweep: a passive open is in SYN_RECV from its SYN-ACK to
// the peer's ACK, which may come back before the agent's loop runs. gVisor sends the SYN-ACK
// from the handshake in SYN_RECV (accept.go startHandshake, connect.go), so a SYN-ACK going
// out is that state seen: onSynAck records it, and the sweep reports it.
type watchedLink struct {
	stack.LinkEndpoint
	onFrame  func()
	onSynAck func(local, remote netip.AddrPort, at time.Time)
}

func (l *watchedLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		l.noteSynAck(pkt)
	}
	n, err := l.LinkEndpoint.WritePackets(pkts)
	l.onFrame()
	return n, err
}

func (l *watchedLink) noteSynAck(pkt stack.PacketBufferPtr) {
	if pkt.TransportProtocolNumber != tcp.ProtocolNumber || pkt.Network() == nil {
		return
	}
	seg := header.TCP(pkt.TransportHeader().Slice())
	if len(seg) < header.TCPMinimumSize || seg.Flags() != header.TCPFlagSyn|header.TCPFlagAck {
		return
	}
	nw := pkt.Network()
	l.onSynAck(addrPort(nw.SourceAddress(), seg.SourcePort()),
		addrPort(nw.DestinationAddress(), seg.DestinationPort()), time.Now())
}

func (l *watchedLink) Attach(d stack.NetworkDispatcher) {
	if d == nil {
		l.LinkEndpoint.Attach(nil)
		return
	}
	l.LinkEndpoint.Attach(&watchedDispatcher{NetworkDispatcher: d, onFrame: l.onFrame})
}

type watchedDispatcher struct {
	stack.NetworkDispatcher
	onFrame func()
}

func (d *watchedDispatcher) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt stack.PacketBufferPtr) {
	d.NetworkDispatcher.DeliverNetworkPacket(p, pkt)
	d.onFrame()
}

func newNetstack(tapFD int) (*netstack, error) {
	s, err := newStack()
	if err != nil {
		return nil, err
	}
	return &netstack{s: s, tapFD: tapFD, deviceFailed: make(chan error, 1), onFrame: func() {},
		onSynAck: func(netip.AddrPort, netip.AddrPort, time.Time) {}}, nil
}

// configure creates the NIC on the TAP (frames are read only from then on) and sets its
// addresses and routes; again, it replaces addresses and routes (the MAC stays).
func (n *netstack) configure(mac []byte, addrs []netip.Prefix, routes []route) *protoError {
	if n.tapFD < 0 {
		return fail("ENODEV", "no TAP device (HALFCLOSE_TAP_FD is not set)")
	}
	link := tcpip.LinkAddress(mac)
	if n.configured && link != n.mac {
		return fail("EINVAL", "the NIC already has MAC %s; gVisor's fdbased NIC cannot change it", n.mac)
	}
	if !n.configured {
		if err := n.createNIC(link); err != nil {
			return err
		}
	}
	for _, p := range n.addrs {
		_ = n.s.RemoveAddress(nicID, tcpAddr(p.Addr()))
	}
	n.addrs = nil
	var table []tcpip.Route
	for _, p := range addrs {
		pa := tcpip.ProtocolAddress{
			Protocol:          netProto(p.Addr()),
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpAddr(p.Addr()), PrefixLen: p.Bits()},
		}
		if err := n.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return fail("EINVAL", "address %s: %s", p, err)
		}
		n.addrs = append(n.addrs, p)
		table = append(table, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	}
	for _, r := range routes {
		table = append(table, tcpip.Route{Destination: routeSubnet(r), Gateway: tcpAddr(r.via), NIC: nicID})
	}
	n.s.SetRouteTable(table)
	return nil
}

func (n *netstack) createNIC(link tcpip.LinkAddress) *protoError {
	ep, err := fdbased.New(&fdbased.Options{
		FDs:            []int{n.tapFD},
		MTU:            ipMTU,
		EthernetHeader: true,
		Address:        link,
		// readv(2): the one dispatcher that works on a TAP fd (the others need a socket).
		PacketDispatchMode: fdbased.Readv,
		ClosedFunc: func(e tcpip.Error) {
			select {
			case n.deviceFailed <- fmt.Errorf("%s", e):
			default:
			}
		},
	})
	if err != nil {
		return fail("ENODEV", "the TAP device: %v", err)
	}
	if e := n.s.CreateNIC(nicID, &watchedLink{LinkEndpoint: ep, onFrame: n.onFrame, onSynAck: n.onSynAck}); e != nil {
		return fail("ENODEV", "creating the NIC: %s", e)
	}
	n.configured, n.mac = true, link
	return nil
}

func routeSubnet(r route) tcpip.Subnet {
	if r.dst.IsValid() {
		return tcpip.AddressWithPrefix{Address: tcpAddr(r.dst.Addr()), PrefixLen: r.dst.Bits()}.Subnet()
	}
	if r.via.Is4() {
		return header.IPv4EmptySubnet
	}
	return header.IPv6EmptySubnet
}

func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func tcpAddr(a netip.Addr) tcpip.Address {
	return tcpip.Address(a.AsSlice())
}

// fullAddr is the endpoint address for ip:port; the unspecified address means any.
func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{Port: ap.Port()}
	if !ap.Addr().IsUnspecified() {
		fa.Addr = tcpAddr(ap.Addr())
	}
	return fa
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice([]byte(a))
	return netip.AddrPortFrom(ip.Unmap(), port)
}
