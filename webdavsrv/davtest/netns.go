package davtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// LAN is a network made of namespaces for tests and benchmarks: a "switch" namespace
// holding a bridge, and hosts joined to it by veth pairs, addressed 10.77.0.1… in order.
// Every address lives inside the namespaces; nothing is added to the root namespace and no
// namespace has a default route, so even broadcast discovery stays on this bridge. It needs
// root and iproute2 (and tc, for Rate).
type LAN struct {
	prefix string
	Hosts  []string
}

// NewLAN makes n hosts. With rate set (a tc rate, e.g. "100mbit"), each host's link is
// shaped to it in both directions (tbf on the host's side and on the switch's port).
func NewLAN(prefix string, n int, rate string) (*LAN, error) {
	l := &LAN{prefix: prefix}
	sw := prefix + "sw"
	run := func(args ...string) error {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	steps := [][]string{{"ip", "netns", "add", sw}, {"ip", "-n", sw, "link", "add", "br0", "type", "bridge"}, {"ip", "-n", sw, "link", "set", "br0", "up"}}
	for i := 0; i < n; i++ {
		h, port := fmt.Sprintf("%sh%d", prefix, i), fmt.Sprintf("p%d", i)
		l.Hosts = append(l.Hosts, h)
		steps = append(steps,
			[]string{"ip", "netns", "add", h},
			[]string{"ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h},
			[]string{"ip", "-n", sw, "link", "set", port, "master", "br0"},
			[]string{"ip", "-n", sw, "link", "set", port, "up"},
			[]string{"ip", "-n", h, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i+1), "dev", "eth0"},
			[]string{"ip", "-n", h, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", h, "link", "set", "lo", "up"})
		if rate != "" {
			tbf := []string{"root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"}
			steps = append(steps,
				append([]string{"ip", "netns", "exec", h, "tc", "qdisc", "add", "dev", "eth0"}, tbf...),
				append([]string{"ip", "netns", "exec", sw, "tc", "qdisc", "add", "dev", port}, tbf...))
		}
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// SetRate shapes host i's link to rate (a tc rate) in both directions, replacing what
// NewLAN set.
func (l *LAN) SetRate(i int, rate string) error {
	tbf := []string{"root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"}
	for _, c := range [][]string{
		append([]string{"ip", "netns", "exec", l.Hosts[i], "tc", "qdisc", "replace", "dev", "eth0"}, tbf...),
		append([]string{"ip", "netns", "exec", l.prefix + "sw", "tc", "qdisc", "replace", "dev", fmt.Sprintf("p%d", i)}, tbf...),
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// DropDiscovery makes host i drop the first n bytes of UDP datagrams it sends to port
// (nftables; counted at the IP layer): lost discovery requests, as on a lossy Wi-Fi.
func (l *LAN) DropDiscovery(i, port, n int) error {
	for _, c := range [][]string{
		{"nft", "add", "table", "inet", "drepolossy"},
		{"nft", "add", "chain", "inet", "drepolossy", "out", "{ type filter hook output priority 0; }"},
		{"nft", "add", "rule", "inet", "drepolossy", "out", "udp", "dport", fmt.Sprint(port), "quota", "until", fmt.Sprint(n), "bytes", "drop"},
	} {
		c = append([]string{"netns", "exec", l.Hosts[i]}, c...)
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// ClearDiscoveryDrop removes what DropDiscovery added on host i.
func (l *LAN) ClearDiscoveryDrop(i int) {
	_ = exec.Command("ip", "netns", "exec", l.Hosts[i], "nft", "delete", "table", "inet", "drepolossy").Run()
}

// Addr is host i's address.
func (l *LAN) Addr(i int) string { return fmt.Sprintf("10.77.0.%d", i+1) }

// Command runs name inside host i's namespace.
func (l *LAN) Command(ctx context.Context, i int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.Hosts[i], name}, args...)...)
}

// Close removes every namespace (the veth pairs go with them).
func (l *LAN) Close() {
	for _, h := range append(l.Hosts, l.prefix+"sw") {
		_ = exec.Command("ip", "netns", "del", h).Run()
	}
}

// LANPrefix is a namespace prefix unique to this process.
func LANPrefix(kind string) string { return fmt.Sprintf("drp%s%d", kind, os.Getpid()%100000) }
