#!/usr/bin/env bash
# compare.sh: phoenix, Ansible and spot side by side on ONE rig. VMs 8101…
# are created and converged by phoenix; then each tool does the same
# read-and-verify work on them N times (a no-op run), timed with hyperfine
# when it is installed (a date +%s%N loop otherwise). Per run it also counts
# what each tool cost on the rig: SSH connections the node's and the guests'
# sshd accepted, qm/pvesh processes on the node (pvesim's call log) and
# guest agent execs (the guests' qemu-ga logs).
#
#   test/bench/compare.sh            # or: make bench-compare
#   N=20 LATENCIES="0 300" VMS="1 10" KEEP=1 test/bench/compare.sh
#
# N          runs per tool (default 10), after one warm-up run
# LATENCIES  pvesim latency per qm/pvesh call in ms, one table each
#            (default "0 300"; 300 ms is qm's Perl start-up cost on a node)
# VMS        how many converged VMs one run works on, one table each
#            (default "1 10"); each tool at its natural concurrency for
#            that many: phoenix --forks, spot -c, Ansible forks
# PHOENIX    phoenix binary to measure (default: build ./cmd/phoenix);
#            PHOENIX_REV says what it was built from, for the table
# SPOT       spot binary (default: spot in PATH, else go install $SPOT_MODULE)
# INSTALL    0: do not apt-get install ansible/hyperfine when missing
# HYPERFINE  0: time with the date loop even when hyperfine is there
# KEEP       1: leave the rig and the work folder for a look afterwards
#
# Needs Docker and Go; run it from anywhere inside the repository.
set -euo pipefail

N=${N:-10}
LATENCIES=${LATENCIES:-"0 300"}
VMS=${VMS:-"1 10"}
INSTALL=${INSTALL:-1}
SPOT_MODULE=${SPOT_MODULE:-github.com/umputun/spot/cmd/spot@latest}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare: %s\n' "$*" >&2; exit 1; }

maxvms=0
for v in $VMS; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || die "VMS: $v is not a VM count"
	[ "$v" -le "$maxvms" ] || maxvms=$v
done

work=$(mktemp -d "${TMPDIR:-/tmp}/phoenix-compare.XXXXXX")
lab=$work/rig
cleanup() {
	if [ "${KEEP:-0}" = 1 ]; then
		log "kept: $work (remove the rig with: go run ./test/bench/cmd/benchlab down $lab)"
		return
	fi
	if [ -f "$lab/rig.json" ]; then go run ./test/bench/cmd/benchlab down "$lab" || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------
apt_install() { # apt_install PACKAGE: true when it is there afterwards
	[ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
	log "apt-get install -y $1"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >"$work/apt-$1.log" 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >>"$work/apt-$1.log" 2>&1; }
}

have_hyperfine=0
if [ "${HYPERFINE:-1}" = 0 ]; then
	: # the date loop, as asked
elif command -v hyperfine >/dev/null || apt_install hyperfine; then
	have_hyperfine=1
fi
[ "$have_hyperfine" = 1 ] || log "hyperfine not available: timing with a date +%s%N loop"

have_ansible=0
if command -v ansible-playbook >/dev/null || apt_install ansible; then
	if ansible-doc -t module ansible.posix.mount >/dev/null 2>&1; then
		have_ansible=1
	else
		log "SKIP Ansible: ansible-playbook is there but the ansible.posix collection is not (Debian's ansible package ships it)"
	fi
else
	log "SKIP Ansible: ansible-playbook is not installed and apt-get install -y ansible did not work (see $work/apt-ansible.log)"
fi

have_spot=0
spot=${SPOT:-$(command -v spot || true)}
if [ -z "$spot" ]; then
	log "go install $SPOT_MODULE"
	if GOBIN=$work/bin go install "$SPOT_MODULE" >"$work/spot-install.log" 2>&1; then
		spot=$work/bin/spot
	else
		log "SKIP spot: go install $SPOT_MODULE failed: $(tail -n 2 "$work/spot-install.log" | tr '\n' ' ')"
	fi
fi
[ -n "$spot" ] && have_spot=1

# --- the rig and its VMs -------------------------------------------------------
phoenix=${PHOENIX:-}
if [ -z "$phoenix" ]; then
	log "go build ./cmd/phoenix"
	CGO_ENABLED=0 go build -o "$work/phoenix" ./cmd/phoenix
	phoenix=$work/phoenix
	PHOENIX_REV="of the work tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ', with uncommitted changes')"
fi
log "start the rig with $maxvms VMs in its config"
go run ./test/bench/cmd/benchlab up "$lab" "$maxvms"
# shellcheck source=/dev/null
. "$lab/lab.env"
read -r -a all_ids <<<"$VMIDS"
read -r -a all_ips <<<"$GUEST_IPS"
read -r -a all_containers <<<"$GUEST_CONTAINERS"

# vmid_flags V: phoenix's --vmid flags for the first V VMs.
vmid_flags() { local i; for ((i = 0; i < $1; i++)); do printf -- '--vmid %s ' "${all_ids[i]}"; done; }

pargs=(--config "$lab/phoenix_vm_configs.json" --inventory "$lab/inventory.yml")
log "phoenix creates VMs $VMIDS"
# shellcheck disable=SC2046 # the flags are words
"$phoenix" run playbooks/create.yml $(vmid_flags "$maxvms") --forks "$maxvms" "${pargs[@]}" >"$work/create.log" 2>&1 ||
	{ cat "$work/create.log" >&2; die "phoenix create failed"; }
# shellcheck disable=SC2046
"$phoenix" run playbooks/create.yml $(vmid_flags "$maxvms") --forks "$maxvms" "${pargs[@]}" >"$work/converge.log" 2>&1 ||
	{ cat "$work/converge.log" >&2; die "phoenix second run failed"; }
grep -q ' changed=0 failed=0 ' "$work/converge.log" ||
	{ cat "$work/converge.log" >&2; die "phoenix's second run changed something: the VMs are not converged"; }

on_node() { docker exec "$NODE_CONTAINER" "$@"; }
on_node sh -c 'mkdir -p /var/log/pvesim && : > /var/log/pvesim/calls.log && touch /etc/pvesim/count_calls'
motd_sha=$(on_node sha256sum "$INJECT_SOURCE" | cut -d' ' -f1)

# --- one runner script per tool and VM count: it fails when the run changed anything
for v in $VMS; do
	cat >"$work/run-phoenix-$v.sh" <<EOF
#!/bin/sh
out=\$("$phoenix" run playbooks/create.yml $(vmid_flags "$v")--forks $v --config "$lab/phoenix_vm_configs.json" --inventory "$lab/inventory.yml" 2>&1) || { echo "\$out" >&2; exit 1; }
echo "\$out" | tail -n 1 | grep -q ' changed=0 failed=0 ' || { echo "\$out" >&2; echo "phoenix: not a no-op run" >&2; exit 1; }
EOF

	if [ "$have_ansible" = 1 ]; then
		{
			echo "[node]"
			echo "pve ansible_host=$NODE_HOST ansible_port=$NODE_PORT ansible_user=root ansible_ssh_private_key_file=$NODE_KEY ansible_ssh_common_args='-o UserKnownHostsFile=$KNOWN_HOSTS -o StrictHostKeyChecking=yes'"
			echo
			echo "[guest]"
			for ((i = 0; i < v; i++)); do
				echo "vm${all_ids[i]} vmid=${all_ids[i]} guest_ip=${all_ips[i]} ansible_host=${all_ips[i]} ansible_user=$GUEST_USER ansible_ssh_private_key_file=$GUEST_KEY ansible_ssh_common_args='-o UserKnownHostsFile=$GUEST_KNOWN_HOSTS -o HostKeyAlias=phoenix-vm-${all_ids[i]} -o StrictHostKeyChecking=yes'"
			done
			echo
			echo "[all:vars]"
			echo "guest_prefix=$GUEST_PREFIX"
			echo "gateway=$GATEWAY"
			echo "nfs_server=$NODE_IP"
			echo "inject_source=$INJECT_SOURCE"
		} >"$work/ansible-inventory-$v.ini"
		# ANSIBLE_SSH_CONTROL_PATH_DIR keeps ControlPersist sockets in the work folder.
		for mode in warm cold; do
			extra=""
			[ "$mode" = cold ] && extra="ANSIBLE_SSH_ARGS='-o ControlMaster=no' "
			cat >"$work/run-ansible-$mode-$v.sh" <<EOF
#!/bin/sh
export ANSIBLE_CONFIG="$here/ansible/ansible.cfg" ANSIBLE_LOCAL_TEMP="$work/ansible-tmp" ANSIBLE_SSH_CONTROL_PATH_DIR="$work/cp" ANSIBLE_NOCOLOR=1 ANSIBLE_FORKS=$v
out=\$(${extra}ansible-playbook -i "$work/ansible-inventory-$v.ini" "$here/ansible/noop.yml" 2>&1) || { echo "\$out" >&2; exit 1; }
echo "\$out" | grep -Eq '(changed|failed|unreachable)=[1-9]' && { echo "\$out" >&2; echo "ansible: not a no-op run" >&2; exit 1; }
exit 0
EOF
		done
	fi

	if [ "$have_spot" = 1 ]; then
		pairs="" hosts=""
		for ((i = 0; i < v; i++)); do
			pairs+="${pairs:+ }${all_ids[i]}=${all_ips[i]}"
			hosts+="    - {name: vm${all_ids[i]}, host: ${all_ips[i]}, port: 22}"$'\n'
		done
		printf 'groups:\n  guests:\n%s' "$hosts" >"$work/spot-inventory-$v.yml"
		# spot checks no host keys (it uses ssh.InsecureIgnoreHostKey); it has no
		# option to, so none is passed.
		cat >"$work/run-spot-$v.sh" <<EOF
#!/bin/sh
set -e
"$spot" -p "$here/spot/noop.yml" -n node -t "$NODE_HOST:$NODE_PORT" -u root -k "$NODE_KEY" --no-color \\
	-e "VMS:$pairs" -e GUEST_PREFIX:$GUEST_PREFIX -e GATEWAY:$GATEWAY -e INJECT_SOURCE:$INJECT_SOURCE >/dev/null
"$spot" -p "$here/spot/noop.yml" -n guest -i "$work/spot-inventory-$v.yml" -t guests -c $v -u $GUEST_USER -k "$GUEST_KEY" --no-color \\
	-e NFS_SERVER:$NODE_IP -e MOTD_SHA:$motd_sha >/dev/null
EOF
	fi
done
chmod +x "$work"/run-*.sh

tools=(phoenix)
[ "$have_ansible" = 1 ] && tools+=(ansible-warm ansible-cold)
[ "$have_spot" = 1 ] && tools+=(spot)

# --- counting (over the first V VMs) ------------------------------------------
node_conns() { docker logs "$NODE_CONTAINER" 2>&1 | grep -c 'Accepted publickey' || true; }
# in_guests V CMD…: the sum of the numbers CMD prints in each of the first V guests.
in_guests() {
	local v=$1 i n sum=0
	shift
	for ((i = 0; i < v; i++)); do
		n=$(docker exec "${all_containers[i]}" "$@" 2>/dev/null || true)
		sum=$((sum + ${n:-0}))
	done
	echo "$sum"
}
guest_conns() { in_guests "$1" grep -c 'Accepted publickey' /var/log/phoenix-guest-init.log; }
# qemu-ga -v logs one guest_exec_child_watch line per guest-exec that ended.
guest_execs() { in_guests "$1" grep -c 'guest_exec_child_watch called' /var/log/qemu-ga.log; }
calls() { on_node sh -c 'grep -c . /var/log/pvesim/calls.log' || true; }
# An image from before qemu-ga ran with -v logs no debug lines: no counts.
execs_counted=1
docker exec "${all_containers[0]}" grep -q ' debug: ' /var/log/qemu-ga.log || execs_counted=0

per() { awk -v a="$1" -v n="$N" 'BEGIN { printf "%.1f", a / n }'; }

# time_runs NAME SCRIPT: prints "mean sd min max" in seconds over N runs.
time_runs() {
	local name=$1 script=$2
	if [ "$have_hyperfine" = 1 ]; then
		hyperfine --style basic --runs "$N" --export-csv "$work/$name.csv" -n "$name" "$script" >&2 || return 1
		awk -F, 'NR == 2 { printf "%.3f %.3f %.3f %.3f\n", $2, $3, $7, $8 }' "$work/$name.csv"
		return
	fi
	local i t0 t1
	: >"$work/$name.times"
	for ((i = 0; i < N; i++)); do
		t0=$(date +%s%N)
		"$script" || die "$name: run $((i + 1)) failed"
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000)) >>"$work/$name.times"
	done
	awk '{ s += $1; q += $1 * $1; if (NR == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
		END { m = s / NR; v = q / NR - m * m; if (v < 0) v = 0;
			printf "%.3f %.3f %.3f %.3f\n", m / 1e6, sqrt(v * NR / (NR > 1 ? NR - 1 : 1)) / 1e6, lo / 1e6, hi / 1e6 }' "$work/$name.times"
}

results=$work/results.md
{
	echo "# phoenix vs Ansible vs spot: no-op runs of converged VMs, N=$N"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), phoenix ${PHOENIX_REV:-$phoenix}"
	echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg), containers running: $(docker ps -q | wc -l) (the rig's: $((maxvms + 1)))"
	[ "$have_ansible" = 1 ] && echo "$(ansible-playbook --version | head -n 1), $(python3 --version)"
	[ "$have_spot" = 1 ] && echo "spot: $("$spot" --version 2>&1 | head -n 1) ($spot)"
	[ "$have_hyperfine" = 1 ] && echo "timing: $(hyperfine --version)" || echo "timing: date +%s%N loop"
	[ "$have_ansible" = 1 ] || echo "Ansible: not measured (not installable here)"
	[ "$have_spot" = 1 ] || echo "spot: not measured (go install $SPOT_MODULE failed)"
	[ "$execs_counted" = 1 ] || echo "guest execs: not counted (the guest image's qemu-ga does not log with -v)"
} >"$results"

for v in $VMS; do
	for lat in $LATENCIES; do
		if [ "$lat" -gt 0 ]; then on_node sh -c "echo $lat > /etc/pvesim/latency_ms"; else on_node rm -f /etc/pvesim/latency_ms; fi
		rows=() spot_mean=""
		for t in "${tools[@]}"; do
			script=$work/run-$t-$v.sh
			log "$t, $v VMs, latency $lat ms: warm-up run"
			"$script" || die "$t: the warm-up run failed or changed something"
			n0=$(node_conns) g0=$(guest_conns "$v") e0=$(guest_execs "$v")
			on_node sh -c ': > /var/log/pvesim/calls.log'
			log "$t, $v VMs, latency $lat ms: $N timed runs"
			time_runs "$t-$v-$lat" "$script" >"$work/stats" || die "$t: a timed run failed or changed something"
			read -r mean sd lo hi <"$work/stats"
			n1=$(node_conns) g1=$(guest_conns "$v") e1=$(guest_execs "$v") c=$(calls)
			execs=$(per $((e1 - e0)))
			[ "$execs_counted" = 1 ] || execs="–"
			rows+=("$t|$mean|$sd|$lo|$hi|$(per $((n1 - n0)))|$(per $((g1 - g0)))|$(per "$c")|$execs")
			[ "$t" = spot ] && spot_mean=$mean
		done
		{
			echo
			echo "## $v VM$([ "$v" = 1 ] || echo s), qm/pvesh latency ${lat} ms"
			echo
			echo "| tool | mean s | ± sd | min s | max s | × spot | node SSH conns/run | guest SSH conns/run | qm/pvesh calls/run | guest execs/run |"
			echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
			for r in "${rows[@]}"; do
				IFS='|' read -r t mean sd lo hi nc gc qc ge <<<"$r"
				ratio="–"
				[ -n "$spot_mean" ] && ratio=$(awk -v a="$mean" -v b="$spot_mean" 'BEGIN { printf "%.2f", a / b }')
				echo "| $t | $mean | $sd | $lo | $hi | $ratio | $nc | $gc | $qc | $ge |"
			done
		} >>"$results"
	done
done
on_node rm -f /etc/pvesim/latency_ms /etc/pvesim/count_calls

echo
cat "$results"
