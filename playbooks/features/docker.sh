#!/bin/sh
# docker: install the Docker engine from the distribution (docker.io) on a
# Debian or Ubuntu guest and enable it. Safe to run again: it does nothing
# when docker is already active.
set -eu

active() {
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
		return 0
	fi
	# Without systemd (containers), a daemon that answers is active.
	command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

if active; then
	echo "docker: already active ($(docker --version 2>/dev/null || echo unknown version)); nothing to do"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "docker: this feature supports Debian/Ubuntu (apt-get) guests only" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q 'install ok installed'; then
	echo "docker: apt-get update"
	apt-get update -q
	echo "docker: installing docker.io"
	apt-get install -y -q --no-install-recommends docker.io
else
	echo "docker: docker.io is installed"
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	echo "docker: enabling and starting the docker service"
	systemctl enable --now docker
else
	# No systemd (containers, minimal images): the init script, else the
	# daemon itself (the init script's ulimit fails in some containers).
	echo "docker: no systemd; starting docker with its init script"
	if ! { [ -x /etc/init.d/docker ] && /etc/init.d/docker start; }; then
		echo "docker: the init script did not start docker; running dockerd in the background (log: /var/log/dockerd.log)"
		nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
	fi
fi
i=0
until active; do
	i=$((i + 1))
	if [ "$i" -ge 30 ]; then
		echo "docker: the daemon did not become active within 30s" >&2
		[ -f /var/log/dockerd.log ] && tail -n 20 /var/log/dockerd.log >&2
		exit 1
	fi
	sleep 1
done

# The config's user (user_config.username in the context) may run docker
# without sudo, as the original did; without one, the cloud-init user.
user=$(python3 -c 'import json, os; print(json.load(open(os.environ["PHOENIX_CONTEXT"])).get("user_config", {}).get("username", ""))' 2>/dev/null || true)
if [ -z "$user" ] || ! id "$user" >/dev/null 2>&1; then
	user=$(getent passwd 1000 | cut -d: -f1 || true)
fi
if [ -n "$user" ] && ! id -nG "$user" | tr ' ' '\n' | grep -qx docker; then
	echo "docker: adding $user to the docker group"
	usermod -aG docker "$user"
fi

echo "docker: $(docker --version)"
