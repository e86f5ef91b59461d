package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// The network of a cluster with nodes. Each cluster claims an index N
// (0–249) with an exclusive lock, so that test packages running at the same
// time never share addresses. The host gets a bridge arcabrN with
// 10.201.N.1/24; node i lives in its own network namespace arca-N-i, joined
// to that bridge by a veth pair, with 10.201.N.(10+i)/24 and a default route
// through the host. Pods of node i use 10.244.i.0/24 behind the node's own
// CNI bridge; a route in every other node's namespace leads there.
//
// Nothing is bound to the machine's external address: the API server, the
// registry and the storage services a pod must reach listen on 10.201.N.1.

const netLockDir = "/run/arca-testenv"

type nodeNet struct {
	index  int
	lock   *os.File
	bridge string
	hostIP string
	nodes  []nodeAddr
}

type nodeAddr struct {
	netns   string // network namespace name
	hostEnd string // veth end on the host bridge
	ip      string // the node's address
	podCIDR string // the node's pod subnet
	gateway string // first address of podCIDR: the CNI bridge
}

// claimNodeNet takes a free index and builds the bridge, namespaces and
// veth pairs for n nodes. Leftovers of a killed test that held the same
// index are removed first. Everything is torn down by the test's cleanup.
func claimNodeNet(t T, n int) *nodeNet {
	t.Helper()
	if err := os.MkdirAll(netLockDir, 0o755); err != nil {
		t.Fatalf("node network: %v", err)
	}
	for i := 0; i < 250; i++ {
		f, err := os.OpenFile(filepath.Join(netLockDir, fmt.Sprintf("net-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatalf("node network lock: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		nn := &nodeNet{index: i, lock: f, bridge: fmt.Sprintf("arcabr%d", i), hostIP: fmt.Sprintf("10.201.%d.1", i)}
		for k := 0; k < n; k++ {
			nn.nodes = append(nn.nodes, nodeAddr{
				netns:   fmt.Sprintf("arca-%d-%d", i, k),
				hostEnd: fmt.Sprintf("arcav%dn%d", i, k),
				ip:      fmt.Sprintf("10.201.%d.%d", i, 10+k),
				podCIDR: fmt.Sprintf("10.244.%d.0/24", k),
				gateway: fmt.Sprintf("10.244.%d.1", k),
			})
		}
		nn.teardown() // leftovers of a test killed while holding index i
		t.Cleanup(func() {
			nn.teardown()
			f.Close()
		})
		if err := nn.setup(); err != nil {
			t.Fatalf("node network: %v", err)
		}
		return nn
	}
	t.Fatalf("node network: all 250 network indexes in %s are locked by running tests", netLockDir)
	return nil
}

func (nn *nodeNet) setup() error {
	steps := [][]string{
		{"ip", "link", "add", nn.bridge, "type", "bridge"},
		{"ip", "addr", "add", nn.hostIP + "/24", "dev", nn.bridge},
		{"ip", "link", "set", nn.bridge, "up"},
	}
	for k, a := range nn.nodes {
		steps = append(steps,
			[]string{"ip", "netns", "add", a.netns},
			[]string{"ip", "link", "add", a.hostEnd, "type", "veth", "peer", "name", "eth0", "netns", a.netns},
			[]string{"ip", "link", "set", a.hostEnd, "master", nn.bridge},
			[]string{"ip", "link", "set", a.hostEnd, "up"},
			[]string{"ip", "-n", a.netns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", a.netns, "addr", "add", a.ip + "/24", "dev", "eth0"},
			[]string{"ip", "-n", a.netns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", a.netns, "route", "add", "default", "via", nn.hostIP},
			[]string{"ip", "netns", "exec", a.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		)
		for j, b := range nn.nodes {
			if j != k {
				steps = append(steps, []string{"ip", "-n", a.netns, "route", "add", b.podCIDR, "via", b.ip})
			}
		}
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// teardown deletes the namespaces (and with them the veth pairs) and the
// bridge, and kills and removes what is left in the nodes' cgroups (a node's
// cgroup root is named after its namespace). Errors are ignored: it also
// runs when nothing exists.
func (nn *nodeNet) teardown() {
	hs, _ := cgroupHierarchies()
	for _, a := range nn.nodes {
		removeLeftoverNodeDirs(a.netns)
		for _, h := range hs {
			killCgroupTree(filepath.Join(h, a.netns))
			removeCgroupTree(filepath.Join(h, a.netns))
		}
		_ = exec.Command("ip", "netns", "del", a.netns).Run()
		_ = exec.Command("ip", "link", "del", a.hostEnd).Run()
	}
	_ = exec.Command("ip", "link", "del", nn.bridge).Run()
}
