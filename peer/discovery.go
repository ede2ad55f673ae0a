package peer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// Instance returns the store's instance id (made once, kept in <store>/instance): the
// responder of a device ignores the requests its own fetch sends.
func (s *Store) Instance() (uint64, error) {
	p := filepath.Join(s.dir, "instance")
	if b, err := readBounded(p, 64); err == nil {
		if id, err := strconv.ParseUint(string(b), 16, 64); err == nil && id != 0 {
			return id, nil
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	b[0] |= 1 // never zero
	id := binary.BigEndian.Uint64(b[:])
	if err := manifests.WriteFileAtomic(p, []byte(hex.EncodeToString(b[:])), storeFileMode); err != nil {
		return 0, err
	}
	return id, nil
}

// Responder answers discovery requests for a peer server: unicast, only for what the store
// holds, never larger than the request, at most answerBurst at once and answerRate per
// second per source address.
type Responder struct {
	Server   *Server
	Instance uint64
	Log      *slog.Logger

	mu      sync.Mutex
	buckets map[string]*bucket
	global  *bucket
}

const (
	answerRate  = 20 // answers per second and source address
	answerBurst = 40
	maxBuckets  = 4096
	// globalRate bounds the datagrams answered (looked at) per second from all
	// addresses together: forged source addresses each get their own bucket
	globalRate  = 1000
	globalBurst = 1000
)

type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes a token from src's bucket and one from the global bucket: no datagram is
// looked at beyond its decoding without both.
func (r *Responder) allow(src string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buckets == nil || len(r.buckets) > maxBuckets {
		r.buckets = map[string]*bucket{}
	}
	if r.global == nil {
		r.global = &bucket{tokens: globalBurst, last: now}
	}
	b, ok := r.buckets[src]
	if !ok {
		b = &bucket{tokens: answerBurst, last: now}
		r.buckets[src] = b
	}
	if !b.take(now, answerRate, answerBurst) {
		return false
	}
	return r.global.take(now, globalRate, globalBurst)
}

// take refills the bucket at rate up to burst and takes a token if there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Answer returns the answer datagram for one received datagram, or nil: malformed,
// oversized, our own, over the source's or the global rate (checked before any look at
// the store), or not held.
func (r *Responder) Answer(b []byte, src string, now time.Time) []byte {
	q, err := DecodeQuery(b)
	if err != nil || q.Instance == r.Instance || !r.allow(src, now) {
		return nil
	}
	a := Answer{Instance: r.Instance, Kind: q.Kind, HTTPPort: uint16(r.Server.HTTPPort), HTTPSPort: uint16(r.Server.HTTPSPort),
		FreeSlots: uint8(min(r.Server.FreeSlots(), 255))}
	switch q.Kind {
	case KindBlob:
		complete, held, ok := r.Server.holding(q.Blob, now)
		if !ok {
			return nil
		}
		a.Blob, a.Complete, a.Held = q.Blob, complete, held
	case KindIndex:
		serial := r.Server.serial(now)
		if serial == 0 || serial < q.Serial {
			return nil
		}
		a.Serial = serial
	}
	out := EncodeAnswer(a)
	if len(out) > len(b) {
		return nil // never (requests are larger), but the rule is the rule
	}
	return out
}

// Serve reads requests on conn until ctx ends, then closes it.
func (r *Responder) Serve(ctx context.Context, conn net.PacketConn) error {
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	buf := make([]byte, maxDatagram+1)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			continue
		}
		if n > maxDatagram {
			continue
		}
		src := addr.String()
		if ua, ok := addr.(*net.UDPAddr); ok {
			src = ua.IP.String()
		}
		if out := r.Answer(buf[:n], src, time.Now()); out != nil {
			_, _ = conn.WriteTo(out, addr)
		}
	}
}

// Found is a peer that answered.
type Found struct {
	Answer
	IP   net.IP
	From *net.UDPAddr // the address the answer came from: its discovery socket
}

// Discover sends q to every target (broadcast addresses and static peers) and to recent
// (peers that answered lately, by unicast), again at each offset of resends, and collects
// the answers that arrive within wait, one per instance, dropping our own and any that
// does not answer q. A resend goes to the recent peers that have not answered yet, and to
// the targets only while nobody answered: a lost datagram is made up for without a peer
// that answered hearing the question again (each peer answers an address a bounded number
// of times a second). sendErrs counts datagrams that could not be sent; it is an error only
// when no request at all went out.
func Discover(ctx context.Context, q Query, targets, recent []*net.UDPAddr, wait time.Duration, resends []time.Duration) (found []Found, sendErrs int, err error) {
	conn, err := listenBroadcast()
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	req := EncodeQuery(q)
	sent := 0
	answered := map[string]bool{}
	first := true
	send := func() {
		var to []*net.UDPAddr
		if first || len(found) == 0 {
			to = append(to, targets...)
		}
		for _, r := range recent {
			if !answered[r.String()] && !slices.ContainsFunc(targets, func(t *net.UDPAddr) bool { return t.String() == r.String() }) {
				to = append(to, r)
			}
		}
		first = false
		for _, t := range to {
			if _, err := conn.WriteToUDP(req, t); err == nil {
				sent++
			} else {
				sendErrs++
			}
		}
	}
	// a send that fails (a full neighbour table, a firewall that drops) is a lost
	// datagram: the resends try again; only when none went out at all is it an error
	send()
	start := time.Now()
	deadline := start.Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	seen := map[uint64]bool{}
	hosts := map[string]bool{}
	buf := make([]byte, maxDatagram+1)
	for {
		// listen until the next resend (or the end), then send again
		until := deadline
		if len(resends) > 0 && start.Add(resends[0]).Before(deadline) {
			until = start.Add(resends[0])
		}
		_ = conn.SetReadDeadline(until)
		n, addr, rerr := conn.ReadFromUDP(buf)
		if rerr != nil {
			var ne net.Error
			if !errors.As(rerr, &ne) || !ne.Timeout() || !until.Before(deadline) || ctx.Err() != nil {
				if sent == 0 && len(targets)+len(recent) > 0 {
					return nil, sendErrs, errors.New("peer: discovery: no request could be sent")
				}
				return found, sendErrs, nil // the wait is over
			}
			resends = resends[1:]
			send()
			continue
		}
		a, err := DecodeAnswer(buf[:n])
		if err != nil || a.Instance == q.Instance || seen[a.Instance] || a.Kind != q.Kind ||
			(q.Kind == KindBlob && a.Blob != q.Blob) || (q.Kind == KindIndex && a.Serial < q.Serial) {
			continue
		}
		answered[addr.String()] = true
		// one answer per address: a host that answers with many instance ids (or from
		// many ports) is one peer, and a LAN's answers are kept up to maxAnswers, a
		// complete holder taking the place of a partial one when full
		host := addr.IP.String()
		if hosts[host] {
			continue
		}
		f := Found{Answer: a, IP: addr.IP, From: addr}
		if len(found) >= maxAnswers {
			i := slices.IndexFunc(found, func(o Found) bool { return !o.Complete })
			if !a.Complete || i < 0 {
				continue
			}
			found = slices.Delete(found, i, i+1)
		}
		seen[a.Instance] = true
		hosts[host] = true
		found = append(found, f)
	}
}

// maxAnswers bounds the answers one discovery keeps (each a peer the fetch may ask).
const maxAnswers = 64

// listenBroadcast opens a UDP socket allowed to send to broadcast addresses.
func listenBroadcast() (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", ":0")
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Targets lists where requests go: with broadcast, 255.255.255.255 and the directed
// broadcast address of every up, non-loopback IPv4 interface; always each static peer
// (host or host:port, the port being its discovery port, default port).
func Targets(broadcast bool, static []string, port int) ([]*net.UDPAddr, error) {
	var out []*net.UDPAddr
	if broadcast {
		out = append(out, &net.UDPAddr{IP: net.IPv4bcast, Port: port})
		ifs, _ := net.Interfaces()
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagBroadcast == 0 {
				continue
			}
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				n, ok := a.(*net.IPNet)
				if !ok || n.IP.To4() == nil {
					continue
				}
				ip, mask := n.IP.To4(), n.Mask
				bc := make(net.IP, 4)
				for i := range 4 {
					bc[i] = ip[i] | ^mask[i]
				}
				out = append(out, &net.UDPAddr{IP: bc, Port: port})
			}
		}
	}
	for _, s := range static {
		host, p := s, port
		if h, ps, err := net.SplitHostPort(s); err == nil {
			n, err := strconv.Atoi(ps)
			if err != nil || n < 1 || n > 65535 {
				return nil, errors.New("peer: static peer " + s + ": bad port")
			}
			host, p = h, n
		}
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return nil, errors.New("peer: static peer " + s + ": cannot resolve")
		}
		for _, ip := range ips {
			if ip.To4() != nil {
				out = append(out, &net.UDPAddr{IP: ip, Port: p})
				break
			}
		}
	}
	return out, nil
}
