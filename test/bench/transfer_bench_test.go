package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-hv/phoenix/test/rig"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/agent"
	"github.com/phoenix-hv/phoenix/transport/fallback"
	sshtransport "github.com/phoenix-hv/phoenix/transport/ssh"
)

// BenchmarkInject measures what an injection of a big file costs phoenix
// in memory, through each channel: the node's file streamed over SFTP into
// fallback.Guest's Put, as file_inject does. Each injection runs in a
// child process (this test binary again) so its peak RSS is its own; the
// child reports getrusage's maxrss and the bytes the Go runtime allocated.
// Channels: the guest agent (1 MiB qm guest exec chunks; the fallback
// keeps what the agent read for a resend), SSH as the guest user through
// sudo (the guest's sshd, agent not used), and SFTP as root (the node's
// sshd as the target: the rig's guests take no root login).
//
//	go test -run '^$' -bench BenchmarkInject -benchtime 1x -timeout 30m ./test/bench/
//
// PHOENIX_BENCH_INJECT_MIB sets the size (default 200).
func BenchmarkInject(b *testing.B) {
	l := theLab(b)
	size := 200
	if v := os.Getenv("PHOENIX_BENCH_INJECT_MIB"); v != "" {
		var err error
		if size, err = strconv.Atoi(v); err != nil || size <= 0 {
			b.Fatalf("PHOENIX_BENCH_INJECT_MIB=%q: want a number of MiB", v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := fmt.Sprintf("/root/bench-inject-%dm.bin", size)
	if res, err := l.rig.NodeExec(ctx, "sh", "-c", fmt.Sprintf("[ -s %s ] || head -c %dM /dev/urandom > %s", src, size, src)); err != nil || res.ExitCode != 0 {
		b.Fatalf("make %s on the node: %v %+v", src, err, res)
	}
	for _, channel := range []string{"agent", "ssh-sudo", "sftp-root"} {
		b.Run(channel, func(b *testing.B) {
			spec := injectSpec{
				Channel: channel, Source: src, Dest: "/root/bench-inject.bin",
				NodeHost: l.rig.NodeHost, NodePort: l.rig.NodePort, NodeKey: l.rig.NodeKey, KnownHosts: l.rig.KnownHosts,
				GuestIP: l.rig.GuestIP(1), GuestUser: rig.GuestUser, GuestKey: l.rig.GuestKey, GuestKnownHosts: l.rig.GuestKnownHosts,
			}
			b.SetBytes(int64(size) << 20)
			var peak, alloc float64
			for i := 0; i < b.N; i++ {
				r, err := runInjectChild(spec)
				if err != nil {
					b.Fatal(err)
				}
				peak = max(peak, float64(r.MaxRSS)/(1<<20))
				alloc += float64(r.TotalAlloc) / (1 << 20)
			}
			b.ReportMetric(peak, "peak-RSS-MiB")
			b.ReportMetric(alloc/float64(b.N), "alloc-MiB/op")
		})
	}
}

// injectSpec is what the child needs to reach the rig.
type injectSpec struct {
	Channel, Source, Dest                         string
	NodeHost                                      string
	NodePort                                      int
	NodeKey, KnownHosts                           string
	GuestIP, GuestUser, GuestKey, GuestKnownHosts string
}

// injectReport is what the child measured of itself.
type injectReport struct {
	MaxRSS     int64  `json:"max_rss"` // bytes
	TotalAlloc uint64 `json:"total_alloc"`
	Error      string `json:"error,omitempty"`
}

const injectChildEnv = "PHOENIX_BENCH_INJECT_CHILD"

func runInjectChild(spec injectSpec) (injectReport, error) {
	exe, err := os.Executable()
	if err != nil {
		return injectReport{}, err
	}
	js, _ := json.Marshal(spec)
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), injectChildEnv+"="+string(js))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return injectReport{}, fmt.Errorf("inject child (%s): %v\n%s%s", spec.Channel, err, out.String(), errb.String())
	}
	var r injectReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("inject child (%s) printed %q: %v", spec.Channel, out.String(), err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("inject through %s: %s", spec.Channel, r.Error)
	}
	return r, nil
}

// injectChild is the child's main: one injection, then its own peak RSS
// and allocations on stdout.
func injectChild(js string) int {
	var spec injectSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r := injectReport{}
	if err := inject(spec); err != nil {
		r.Error = err.Error()
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.MaxRSS, r.TotalAlloc = ru.Maxrss*1024, ms.TotalAlloc // Linux: maxrss in KiB
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

func inject(spec injectSpec) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	nodeOpts := sshtransport.Options{Host: spec.NodeHost, Port: spec.NodePort, User: "root",
		IdentityFiles: []string{spec.NodeKey}, KnownHosts: spec.KnownHosts, Policy: sshtransport.Strict}
	node, err := sshtransport.Dial(ctx, nodeOpts)
	if err != nil {
		return err
	}
	defer node.Close()
	o := fallback.Options{VMID: rig.TestVMID, Timeout: time.Minute}
	switch spec.Channel {
	case "agent":
		o.Agent = agent.New(node, rig.PVENode, rig.TestVMID)
	case "ssh-sudo":
		o.SSHUser = spec.GuestUser
		o.DialSSH = func(ctx context.Context) (transport.Transport, error) {
			return sshtransport.Dial(ctx, sshtransport.Options{Host: spec.GuestIP, User: spec.GuestUser, IdentityFiles: []string{spec.GuestKey},
				KnownHosts: spec.GuestKnownHosts, HostKeyAlias: sshtransport.GuestHostKeyAlias(rig.TestVMID), Policy: sshtransport.Strict})
		}
	case "sftp-root":
		o.SSHUser = "root"
		o.DialSSH = func(ctx context.Context) (transport.Transport, error) { return sshtransport.Dial(ctx, nodeOpts) }
	default:
		return fmt.Errorf("unknown channel %q", spec.Channel)
	}
	g := fallback.New(o)
	defer g.Close()
	if err := g.Wait(ctx); err != nil {
		return err
	}
	// As file_inject copies: the node's file streamed into the guest.
	pr, pw := io.Pipe()
	got := make(chan error, 1)
	go func() {
		err := node.Get(ctx, spec.Source, pw)
		pw.CloseWithError(err)
		got <- err
	}()
	putErr := g.Put(ctx, spec.Dest, pr, transport.Attrs{Mode: 0o600})
	pr.CloseWithError(errors.New("put stopped"))
	if err := <-got; err != nil && putErr == nil {
		return err
	}
	return putErr
}
