package ssh

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// testServer is an in-process SSH server on 127.0.0.1: exec requests run
// with /bin/sh -c, plus exit-status, stdin, signals, keepalive replies, the
// sftp subsystem and direct-tcpip forwarding. It counts what a test asserts.
type testServer struct {
	t    *testing.T
	addr string
	port int
	keys []ssh.Signer // host keys
	ln   net.Listener

	ignoreKeepalive atomic.Bool // leave keepalives unanswered, like a dead peer
	stallSFTP       atomic.Bool // sftp servers stop reading requests, like a hung disk
	keepalives      atomic.Int32

	mu       sync.Mutex
	running  int // exec commands running now
	peak     int // most exec commands running at once
	signals  []string
	forwards []string // direct-tcpip targets
	conns    []*ssh.ServerConn
	sftps    []ssh.Channel
}

// startServer serves clients holding one of the authorized keys. Host keys
// default to one new ed25519 key.
func startServer(t *testing.T, authorized []ssh.PublicKey, hostKeys ...ssh.Signer) *testServer {
	t.Helper()
	if len(hostKeys) == 0 {
		hostKeys = []ssh.Signer{newSigner(t)}
	}
	s := &testServer{t: t, keys: hostKeys}
	allowed := map[string]bool{}
	for _, k := range authorized {
		allowed[string(k.Marshal())] = true
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if allowed[string(k.Marshal())] {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	s.port = ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(nc, cfg)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.dropAll()
	})
	return s
}

func (s *testServer) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		nc.Close()
		return
	}
	s.mu.Lock()
	s.conns = append(s.conns, sc)
	s.mu.Unlock()
	go func() {
		for req := range reqs {
			if req.Type == "keepalive@openssh.com" {
				s.keepalives.Add(1)
				if s.ignoreKeepalive.Load() {
					continue
				}
			}
			if req.WantReply {
				req.Reply(false, nil) // what OpenSSH answers to keepalives
			}
		}
	}()
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			go s.session(nch)
		case "direct-tcpip":
			go s.forward(nch)
		default:
			nch.Reject(ssh.UnknownChannelType, nch.ChannelType())
		}
	}
}

// dropAll cuts every connection, like a rebooting host.
func (s *testServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// stallable is a channel whose reads wait while stall is set.
type stallable struct {
	ssh.Channel
	stall *atomic.Bool
}

func (s stallable) Read(p []byte) (int, error) {
	for s.stall.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	return s.Channel.Read(p)
}

// killSFTP ends every sftp subsystem session, keeping the connections.
func (s *testServer) killSFTP() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.sftps {
		ch.Close()
	}
}

func (s *testServer) stats() (peak int, signals, forwards []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, append([]string(nil), s.signals...), append([]string(nil), s.forwards...)
}

func (s *testServer) runningNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

func (s *testServer) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	var sp sessionProc
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if ssh.Unmarshal(req.Payload, &p) != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			s.exec(ch, p.Command, &sp)
		case "subsystem":
			var p struct{ Name string }
			if ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			s.mu.Lock()
			s.sftps = append(s.sftps, ch)
			s.mu.Unlock()
			go func() {
				srv, err := sftp.NewServer(stallable{ch, &s.stallSFTP})
				if err == nil {
					srv.Serve()
				}
				ch.Close()
			}()
		case "signal":
			var p struct{ Signal string }
			ssh.Unmarshal(req.Payload, &p)
			s.mu.Lock()
			s.signals = append(s.signals, p.Signal)
			s.mu.Unlock()
			// Like sshd: the signal goes to the command's process group.
			if sig, ok := signalNames[p.Signal]; ok {
				sp.signal(sig)
			}
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the session: like sshd, end what still runs.
	sp.kill()
}

// sessionProc is the process of one session, killed as a group until it
// has been reaped (its pid may be reused after that).
type sessionProc struct {
	mu     sync.Mutex
	pid    int
	exited bool
}

var signalNames = map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL}

func (p *sessionProc) kill() { p.signal(syscall.SIGKILL) }

func (p *sessionProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pid != 0 && !p.exited {
		syscall.Kill(-p.pid, sig)
	}
}

func (p *sessionProc) set(pid int, exited bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pid, p.exited = pid, exited
}

// exec starts line in its own process group (so a kill reaches its
// children); a goroutine reports the exit status and closes the channel.
func (s *testServer) exec(ch ssh.Channel, line string, sp *sessionProc) {
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		io.WriteString(ch.Stderr(), err.Error())
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{127}))
		ch.Close()
		return
	}
	sp.set(cmd.Process.Pid, false)
	s.mu.Lock()
	s.running++
	s.peak = max(s.peak, s.running)
	s.mu.Unlock()
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	go s.wait(ch, cmd, sp)
}

func (s *testServer) wait(ch ssh.Channel, cmd *exec.Cmd, sp *sessionProc) {
	defer ch.Close()
	err := cmd.Wait()
	sp.set(cmd.Process.Pid, true)
	// Counted down before the client can learn of the exit, so the count
	// never includes a command the client already considers finished.
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	status := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		status = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = 128 + int(ws.Signal())
		}
	}
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
}

func (s *testServer) forward(nch ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &p); err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	target := net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))
	s.mu.Lock()
	s.forwards = append(s.forwards, target)
	s.mu.Unlock()
	conn, err := net.Dial("tcp", target)
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		io.Copy(ch, conn)
		ch.CloseWrite()
	}()
	io.Copy(conn, ch)
	conn.Close()
	ch.Close()
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newECDSASigner(t *testing.T) ssh.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newKeyFile writes a new ed25519 private key (encrypted when passphrase is
// set) and returns its path and public key.
func newKeyFile(t *testing.T, passphrase string) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return file, pub
}
