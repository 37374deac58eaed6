# phoenix's agent helper: runs on a Proxmox node (shipped on stdin to
# `perl -`, nothing installed) and talks to one VM's QEMU guest agent socket
# the way Proxmox does (PVE::QMPClient): connect, guest-sync-delimited, then
# the commands, one connection for the whole batch. Only perl-base modules:
# every Proxmox node has them.
#
# Arguments: VMID RUNDIR SYNC_MS HOLD_MS. The requests follow __END__ on
# stdin, one a line: "MS JSON", a guest-exec to send and whose process to
# poll with guest-exec-status until it exits, at most MS. Output, one
# record a line:
#   down TEXT        request I on was not sent: the VM or its agent is not there
#   up               the agent answered the sync
#   reply I JSON     the agent's reply to request I (its pid, or an error)
#   status I JSON    the exec-status that says request I's process exited
#   lost I TEXT      request I was sent and its answer did not come
#   running I PID    request I's process still ran after its MS
#   end              the helper is done
# Requests after a down, lost or running record, or an error reply, are
# not sent.
use strict;
use warnings;
use Socket qw(PF_UNIX SOCK_STREAM pack_sockaddr_un);
use POSIX ();
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);

my ($vmid, $rundir, $sync_ms, $hold_ms) = @ARGV;
die "usage: perl - VMID RUNDIR SYNC_MS HOLD_MS\n" unless defined $hold_ms && $vmid =~ /^\d+$/;
my $pidfile = "$rundir/$vmid.pid";
my $path = "$rundir/$vmid.qga";
$| = 1;

# Milliseconds on a monotonic clock (perl-base has no Time::HiRes).
my $tck = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
sub now { return (POSIX::times())[0] * 1000 / $tck }
sub nap { select(undef, undef, undef, $_[0] / 1000) }

my @reqs;
while (my $l = <STDIN>) {
	chomp $l;
	next if $l eq '';
	my ($ms, $json) = split / /, $l, 2;
	die "bad request line: $l\n" unless defined $json && $ms =~ /^\d+$/;
	push @reqs, [$ms, $json];
}

# The VM runs when its pid file names a live, non-zombie QEMU started with
# that pid file (PVE::QemuServer::Helpers::vm_running_locally): no socket
# is there otherwise, and a stale one must not be trusted.
sub running {
	open(my $f, '<', $pidfile) or return 0;
	my $pid = <$f>;
	close $f;
	return 0 unless defined $pid && $pid =~ /^(\d+)\n?$/;
	$pid = $1;
	open(my $c, '<', "/proc/$pid/cmdline") or return 0;
	local $/;
	my @argv = split /\0/, (<$c> // '');
	close $c;
	return 0 unless @argv && ($argv[0] =~ /kvm$/ || $argv[0] =~ m{(^|/)qemu-system-[^/]*$});
	my $ok = 0;
	for my $i (0 .. $#argv - 1) {
		$ok = 1 if $argv[$i] eq '-pidfile' && $argv[$i + 1] eq $pidfile;
	}
	return 0 unless $ok;
	open(my $s, '<', "/proc/$pid/stat") or return 0;
	my $stat = <$s> // '';
	close $s;
	return $stat =~ /.*\)\s+([A-Za-z])/s && $1 ne 'Z';
}

my ($sock, $buf);

# agent connects and syncs until the deadline: QEMU serves one client at a
# time and queues the next, and a client that times out leaves its answer
# in the stream, so everything up to our sync id's 0xFF-prefixed echo is
# skipped. It returns an error text, or '' once the agent answered.
sub agent {
	my ($deadline) = @_;
	close $sock if $sock;
	undef $sock;
	$buf = '';
	socket(my $s, PF_UNIX, SOCK_STREAM, 0) or return "socket: $!";
	my $fl = fcntl($s, F_GETFL, 0);
	fcntl($s, F_SETFL, $fl | O_NONBLOCK) or return "fcntl: $!";
	my $addr = pack_sockaddr_un($path);
	until (connect($s, $addr)) {
		return "unable to connect to VM $vmid qga socket - $!" unless $!{EAGAIN} || $!{EINTR};
		return "unable to connect to VM $vmid qga socket - timeout" if now() >= $deadline;
		nap(100);
	}
	$sock = $s;
	my $id = $$ * 1000000 + int(rand(1000000));
	my $err = put("{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":$id}}\n", $deadline);
	return $err if $err;
	while (1) {
		my $i = index($buf, "\xff");
		if ($i < 0) {
			$buf = '';
			$err = fill($deadline);
			return $err if $err;
			next;
		}
		substr($buf, 0, $i + 1) = '';
		my ($line, $e) = line($deadline);
		return $e unless defined $line;
		return '' if $line =~ /^\{\s*"return"\s*:\s*(\d+)\s*\}\s*$/ && $1 == $id;
	}
}

# put writes all of $data before the deadline; it returns an error text or ''.
sub put {
	my ($data, $deadline) = @_;
	my $off = 0;
	while ($off < length $data) {
		my $left = $deadline - now();
		return 'timeout' if $left <= 0;
		my $w = '';
		vec($w, fileno($sock), 1) = 1;
		next unless select(undef, $w, undef, $left / 1000) > 0;
		my $n = syswrite($sock, $data, length($data) - $off, $off);
		if (!defined $n) {
			next if $!{EAGAIN} || $!{EINTR};
			return "write: $!";
		}
		$off += $n;
	}
	return '';
}

# fill reads what the socket has into $buf, waiting until the deadline.
sub fill {
	my ($deadline) = @_;
	while (1) {
		my $left = $deadline - now();
		return 'timeout' if $left <= 0;
		my $r = '';
		vec($r, fileno($sock), 1) = 1;
		next unless select($r, undef, undef, $left / 1000) > 0;
		my $n = sysread($sock, $buf, 1 << 20, length $buf);
		if (!defined $n) {
			next if $!{EAGAIN} || $!{EINTR};
			return "read: $!";
		}
		return 'connection closed' if $n == 0;
		return '';
	}
}

# line returns the next non-empty line (without its newline), or undef and
# an error text.
sub line {
	my ($deadline) = @_;
	while (1) {
		my $i = index($buf, "\n");
		if ($i >= 0) {
			my $l = substr($buf, 0, $i);
			substr($buf, 0, $i + 1) = '';
			$l =~ s/\r$//;
			next if $l eq '';
			return ($l);
		}
		my $err = fill($deadline);
		return (undef, $err) if $err;
	}
}

# ask sends one request and returns its reply line, or undef and an error.
sub ask {
	my ($json, $deadline) = @_;
	my $err = put("$json\n", $deadline);
	return (undef, $err) if $err;
	return line($deadline);
}

# exec_status polls guest-exec-status of pid until it exited: often, on the
# same connection, for HOLD_MS; then, so a long command does not keep the
# one-client socket from Proxmox (qm guest, backups' fs-freeze), on a fresh
# connection per poll, every half second, then every second. An agent that
# gives no answer for LOST_MS (another client may hold the socket for a
# while) has stopped answering: the command's end is not known.
my $lost_ms = 10000;
sub exec_status {
	my ($i, $pid, $deadline) = @_;
	my $start = now();
	my $answered = $start;
	my $req = "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}";
	while (1) {
		my $age = now() - $start;
		my $err = $sock ? '' : agent(now() + $sync_ms);
		my $r;
		($r, $err) = ask($req, now() + $sync_ms) unless $err;
		if (defined $r) {
			$answered = now();
			if ($r =~ /"exited"\s*:\s*true/) { print "status $i $r\n"; return 1 }
			if ($r !~ /^\{\s*"return"/) { print "lost $i $r\n"; return 0 }
		} else {
			close $sock if $sock;
			undef $sock; # the stream may hold a late answer: sync again
			if (!running()) { print "lost $i the VM stopped: $err\n"; return 0 }
			if (now() - $answered >= $lost_ms) { print "lost $i no answer from the agent for ${lost_ms}ms: $err\n"; return 0 }
		}
		if (now() >= $deadline) { print "running $i $pid\n"; return 0 }
		my $wait = $age < 100 ? 10 : $age < 1000 ? 25 : $age < $hold_ms ? 50 : $age < 10000 ? 500 : 1000;
		if ($age >= $hold_ms && $sock) {
			close $sock;
			undef $sock;
		}
		my $left = $deadline - now();
		nap($wait < $left ? $wait : $left) if $left > 0;
	}
}

# down says why the agent cannot be used.
sub down {
	my ($err) = @_;
	$err = 'no answer to guest-sync-delimited' if $err eq 'timeout' || $err eq 'connection closed';
	print "down QEMU guest agent is not running ($err)\n";
}

sub batch {
	return print "down VM $vmid not running\n" unless running();
	my $err = agent(now() + $sync_ms);
	return down($err) if $err;
	print "up\n";
	for my $i (0 .. $#reqs) {
		my ($ms, $json) = @{$reqs[$i]};
		my $deadline = now() + $ms;
		if (!$sock) {
			$err = agent(now() + $sync_ms);
			return down($err) if $err;
		}
		my ($r, $e) = ask($json, now() + $sync_ms);
		return print "lost $i $e\n" unless defined $r;
		print "reply $i $r\n";
		# An error reply (a program that cannot start) ends the batch too.
		return unless $r =~ /^\{\s*"return"\s*:\s*\{\s*"pid"\s*:\s*(\d+)/;
		return unless exec_status($i, $1, $deadline);
	}
}

batch();
close $sock if $sock;
print "end\n";
