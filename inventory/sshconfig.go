package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// maxJumps bounds ProxyJump chains (and so a cycle through ssh_config).
const maxJumps = 8

// sshConfig answers ssh_config questions for one decoded file; a nil cfg
// (no file) knows nothing.
type sshConfig struct {
	path string
	cfg  *ssh_config.Config
}

func readSSHConfig(path string) (*sshConfig, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &sshConfig{path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ssh config: %w", err)
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %w", path, err)
	}
	return &sshConfig{path: path, cfg: cfg}, nil
}

// sshHost is what ssh_config says about one alias; empty when unset.
type sshHost struct {
	hostname, user, identityFile, proxyJump string
	port                                    int
}

func (s *sshConfig) host(alias string) (sshHost, error) {
	var h sshHost
	if s.cfg == nil {
		return h, nil
	}
	var errs []error
	get := func(key string) string {
		v, err := s.cfg.Get(alias, key)
		errs = append(errs, err)
		return v
	}
	h.user = get("User")
	h.hostname = sshTokens(get("HostName"), alias, h.user)
	if p := get("Port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || !validPort(n) {
			errs = append(errs, fmt.Errorf("ssh config %s: Port %q of %s is not a port", s.path, p, alias))
		}
		h.port = n
	}
	if id := get("IdentityFile"); id != "" {
		// Relative to the ssh_config's directory (~/.ssh), not to wherever
		// phoenix happens to run.
		p, err := localPath(sshTokens(id, alias, h.user), filepath.Dir(s.path))
		errs = append(errs, err)
		h.identityFile = p
	}
	if j := get("ProxyJump"); !strings.EqualFold(j, "none") {
		h.proxyJump = j
	}
	return h, errors.Join(errs...)
}

// sshTokens expands the ssh_config tokens phoenix can know: %h (the
// alias), %r (remote user), %d (home), %u (local user), %%.
func sshTokens(s, alias, remoteUser string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	home, _ := os.UserHomeDir()
	return strings.NewReplacer("%%", "%", "%h", alias, "%r", remoteUser, "%d", home, "%u", localUser()).Replace(s)
}

func localUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// chain resolves a ProxyJump value ("a,b": through a, then b) into the last
// hop, whose Jump is the hop before. visiting names the hosts on the way
// here, to refuse cycles.
func (s *sshConfig) chain(inv *Inventory, spec string, visiting []string) (*Node, error) {
	if spec == "" {
		return nil, nil
	}
	var prev *Node
	for i, hop := range strings.Split(spec, ",") {
		n, err := s.hop(inv, strings.TrimSpace(hop), visiting)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			c := *n
			c.Jump = prev
			n = &c
		}
		prev = n
	}
	return prev, nil
}

// hop resolves one ProxyJump hop: an inventory node by name, or
// [user@]host[:port] through ssh_config.
func (s *sshConfig) hop(inv *Inventory, hop string, visiting []string) (*Node, error) {
	if hop == "" {
		return nil, fmt.Errorf("empty hop")
	}
	if slices.Contains(visiting, hop) {
		return nil, fmt.Errorf("cycle: %s -> %s", strings.Join(visiting, " -> "), hop)
	}
	if len(visiting) > maxJumps {
		return nil, fmt.Errorf("more than %d hops: %s", maxJumps, strings.Join(visiting, " -> "))
	}
	visiting = append(slices.Clone(visiting), hop)
	if n := inv.Nodes[hop]; n != nil {
		c := *n
		jump, err := s.chain(inv, n.ProxyJump, visiting)
		c.Jump = jump
		return &c, err
	}
	usr, host, port, err := splitHop(hop)
	if err != nil {
		return nil, err
	}
	h, err := s.host(host)
	if err != nil {
		return nil, err
	}
	n := &Node{
		Name:         hop,
		Address:      firstOf(h.hostname, host),
		Port:         firstInt(port, h.port, 22),
		User:         firstOf(usr, h.user, localUser()),
		IdentityFile: h.identityFile,
		ProxyJump:    h.proxyJump,
		PVENode:      "localhost",
	}
	n.Jump, err = s.chain(inv, h.proxyJump, visiting)
	return n, err
}

// splitHop parses [ssh://][user@]host[:port].
func splitHop(hop string) (usr, host string, port int, err error) {
	host = strings.TrimPrefix(hop, "ssh://")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		usr, host = host[:i], host[i+1:]
	}
	if strings.HasPrefix(host, "[") || strings.Count(host, ":") == 1 {
		h, p, err := net.SplitHostPort(host)
		if err != nil {
			return "", "", 0, fmt.Errorf("hop %q: %w", hop, err)
		}
		port, err = strconv.Atoi(p)
		if err != nil || !validPort(port) {
			return "", "", 0, fmt.Errorf("hop %q: %q is not a port", hop, p)
		}
		host = h
	}
	if host == "" {
		return "", "", 0, fmt.Errorf("hop %q: no host", hop)
	}
	return usr, host, port, nil
}
