#!/usr/bin/env bash
# Read-only audit of the kernel settings and limits ringmaster depends on: prints each knob with
# its current value, the value recommended in tuning/README.md, and OK, LOW or n/a (not present
# here, e.g. in a container or on a kernel without the knob).
#
# It only reads /proc and /sys and runs `ulimit`: it writes nothing and needs no root, so it is
# safe on a production box and runs in CI (.ci/run) so that it cannot rot.
#
# Usage: tuning/check.sh [--strict]
#   exit 0 always; with --strict, exit 1 if any knob is LOW.
set -uo pipefail
export LC_ALL=C # byte-wise string comparison and sorting

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

strict=0
case "${1:-}" in
  "") ;;
  --strict) strict=1 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "check.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

# Recommended values; tuning/sysctl.conf and tuning/ringmaster.service carry the same numbers.
readonly REC_SOMAXCONN=65535
readonly REC_SYN_BACKLOG=65535
readonly REC_PORT_RANGE_WIDTH=64000 # 1024..65023
readonly REC_NR_OPEN=1048576
readonly REC_FILE_MAX=2097152
readonly REC_NOFILE=1048576
readonly REC_SOCK_BUF_MAX=16777216
readonly REC_TCP_RMEM_MAX=6291456 # kernel default: do not lower it
readonly REC_TCP_WMEM_MAX=4194304 # kernel default: do not lower it
readonly REC_NETDEV_BACKLOG=16384
# ringmaster's io_uring rings (4096 entries) take about 400 KiB each, one per worker; kernels
# before 5.12 count that against RLIMIT_MEMLOCK.
readonly RING_KIB=512

low_count=0

row() { # knob current recommended status
  printf '%-36s %-22s %-28s %s\n' "$1" "$2" "$3" "$4"
  if [ "$4" = LOW ]; then low_count=$((low_count + 1)); fi
}

# Reads a one-line /proc or /sys file with runs of blanks squeezed; fails if it is unreadable.
read_knob() {
  local value
  [ -r "$1" ] || return 1
  value=$(tr -s ' \t' '  ' <"$1" 2>/dev/null) || return 1
  [ -n "$value" ] || return 1
  printf '%s' "$value"
}

is_number() { [[ $1 =~ ^[0-9]+$ ]]; }

# ge A B: A >= B for non-negative integers of any length (no 64-bit overflow: compares digits).
ge() {
  local a=${1#"${1%%[!0]*}"} b=${2#"${2%%[!0]*}"}
  a=${a:-0} b=${b:-0}
  if [ "${#a}" -ne "${#b}" ]; then [ "${#a}" -gt "${#b}" ]; return; fi
  [[ $a > $b || $a == "$b" ]]
}

# A knob that should be at least `min`.
at_least() { # knob file min
  local value
  if ! value=$(read_knob "$2"); then row "$1" "n/a" ">= $3" "n/a"; return; fi
  if is_number "$value" && ge "$value" "$3"; then
    row "$1" "$value" ">= $3" OK
  else
    row "$1" "$value" ">= $3" LOW
  fi
}

# A knob that should equal one of the listed values (the first one is shown as recommended).
one_of() { # knob file shown-recommendation value...
  local knob=$1 file=$2 shown=$3 value want
  shift 3
  if ! value=$(read_knob "$file"); then row "$knob" "n/a" "$shown" "n/a"; return; fi
  for want in "$@"; do
    if [ "$value" = "$want" ]; then row "$knob" "$value" "$shown" OK; return; fi
  done
  row "$knob" "$value" "$shown" LOW
}

# A process limit as printed by `ulimit` ("unlimited" or a number).
limit_row() { # knob value min
  if [ "$2" = unlimited ] || { is_number "$2" && ge "$2" "$3"; }; then
    row "$1" "$2" ">= $3" OK
  elif [ -z "$2" ]; then
    row "$1" "n/a" ">= $3" "n/a"
  else
    row "$1" "$2" ">= $3" LOW
  fi
}

# "0 1 2 3 5 7 8" -> "0-3,5,7-8"
cpu_ranges() {
  local out="" start="" prev="" cpu
  for cpu in "$@"; do
    if [ -n "$prev" ] && [ "$cpu" -eq $((prev + 1)) ]; then prev=$cpu; continue; fi
    if [ -n "$start" ]; then
      if [ "$start" = "$prev" ]; then out+="$start,"; else out+="$start-$prev,"; fi
    fi
    start=$cpu prev=$cpu
  done
  if [ -n "$start" ]; then
    if [ "$start" = "$prev" ]; then out+="$start"; else out+="$start-$prev"; fi
  fi
  printf '%s' "${out%,}"
}

kernel_at_least() { # major minor
  local release major minor
  release=$(uname -r 2>/dev/null) || return 1
  [[ $release =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  [ "$major" -gt "$1" ] || { [ "$major" -eq "$1" ] && [ "$minor" -ge "$2" ]; }
}

S=/proc/sys
printf '%-36s %-22s %-28s %s\n' KNOB CURRENT RECOMMENDED STATUS

# Kernel: ringmaster sets up its rings with COOP_TASKRUN (5.19) and SINGLE_ISSUER (6.0) and
# falls back to a plain ring, much slower under load, when the kernel refuses them.
release=$(uname -r 2>/dev/null || echo n/a)
if [ "$release" = n/a ]; then
  row "kernel" "n/a" ">= 6.0" "n/a"
elif kernel_at_least 6 0; then
  row "kernel" "$release" ">= 6.0" OK
else
  row "kernel" "$release" ">= 6.0" LOW
fi

# Listen backlog.
at_least net.core.somaxconn "$S/net/core/somaxconn" "$REC_SOMAXCONN"
at_least net.ipv4.tcp_max_syn_backlog "$S/net/ipv4/tcp_max_syn_backlog" "$REC_SYN_BACKLOG"
one_of net.ipv4.tcp_syncookies "$S/net/ipv4/tcp_syncookies" "1" 1 2

# Ephemeral ports for connections to the real servers.
if range=$(read_knob "$S/net/ipv4/ip_local_port_range") && [[ $range =~ ^([0-9]+)\ ([0-9]+)$ ]]; then
  width=$((BASH_REMATCH[2] - BASH_REMATCH[1] + 1))
  shown="${BASH_REMATCH[1]}-${BASH_REMATCH[2]} ($width)"
  if [ "$width" -ge "$REC_PORT_RANGE_WIDTH" ]; then status=OK; else status=LOW; fi
  row "net.ipv4.ip_local_port_range width" "$shown" ">= $REC_PORT_RANGE_WIDTH (1024-65023)" "$status"
else
  row "net.ipv4.ip_local_port_range width" "n/a" ">= $REC_PORT_RANGE_WIDTH (1024-65023)" "n/a"
fi
one_of net.ipv4.tcp_tw_reuse "$S/net/ipv4/tcp_tw_reuse" "1" 1
one_of net.ipv4.tcp_timestamps "$S/net/ipv4/tcp_timestamps" "1 (tw_reuse needs it)" 1 2

# File descriptors.
at_least fs.nr_open "$S/fs/nr_open" "$REC_NR_OPEN"
at_least fs.file-max "$S/fs/file-max" "$REC_FILE_MAX"
limit_row "ulimit -n soft (this shell)" "$(ulimit -Sn 2>/dev/null)" "$REC_NOFILE"
limit_row "ulimit -n hard (this shell)" "$(ulimit -Hn 2>/dev/null)" "$REC_NOFILE"

# Socket buffers: ringmaster leaves SO_RCVBUF/SO_SNDBUF to autotuning, bounded by tcp_[rw]mem.
at_least net.core.rmem_max "$S/net/core/rmem_max" "$REC_SOCK_BUF_MAX"
at_least net.core.wmem_max "$S/net/core/wmem_max" "$REC_SOCK_BUF_MAX"
for dir in rmem wmem; do
  if [ "$dir" = rmem ]; then min=$REC_TCP_RMEM_MAX; else min=$REC_TCP_WMEM_MAX; fi
  if triple=$(read_knob "$S/net/ipv4/tcp_$dir") && [[ $triple =~ ([0-9]+)$ ]]; then
    max=${BASH_REMATCH[1]}
    if ge "$max" "$min"; then status=OK; else status=LOW; fi
    row "net.ipv4.tcp_$dir (max)" "$max" ">= $min" "$status"
  else
    row "net.ipv4.tcp_$dir (max)" "n/a" ">= $min" "n/a"
  fi
done

# Receive path.
at_least net.core.netdev_max_backlog "$S/net/core/netdev_max_backlog" "$REC_NETDEV_BACKLOG"
for knob in busy_poll busy_read; do
  if value=$(read_knob "$S/net/core/$knob"); then
    row "net.core.$knob" "$value" "0 (measure before raising)" OK
  else
    row "net.core.$knob" "n/a" "0 (measure before raising)" "n/a"
  fi
done

# CPU frequency governor, grouped by value (absent in most VMs and containers).
declare -A governor_cpus=()
for file in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
  [ -r "$file" ] || continue
  cpu=${file#/sys/devices/system/cpu/cpu}
  cpu=${cpu%%/*}
  governor=$(read_knob "$file") || continue
  governor_cpus[$governor]+="$cpu "
done
if [ "${#governor_cpus[@]}" -eq 0 ]; then
  row "cpufreq governor" "n/a (no cpufreq)" "performance" "n/a"
else
  for governor in "${!governor_cpus[@]}"; do
    mapfile -t sorted < <(tr ' ' '\n' <<<"${governor_cpus[$governor]}" | grep . | sort -n)
    cpus=$(cpu_ranges "${sorted[@]}")
    if [ "$governor" = performance ]; then status=OK; else status=LOW; fi
    row "cpufreq governor cpu $cpus" "$governor" "performance" "$status"
  done
fi

# Locked memory: only kernels before 5.12 charge io_uring rings to RLIMIT_MEMLOCK.
memlock=$(ulimit -Sl 2>/dev/null)
if kernel_at_least 5 12; then
  row "ulimit -l (this shell, KiB)" "${memlock:-n/a}" "any (kernel >= 5.12)" OK
else
  cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
  limit_row "ulimit -l (this shell, KiB)" "$memlock" "$((RING_KIB * cpus))"
fi

# io_uring allowed? (kernel.io_uring_disabled exists from 6.6: 0 all, 1 group only, 2 nobody)
if value=$(read_knob "$S/kernel/io_uring_disabled"); then
  status=LOW
  if [ "$value" = 0 ]; then
    status=OK
  elif [ "$value" = 1 ]; then
    group=$(read_knob "$S/kernel/io_uring_group" || echo -1)
    if [ "$(id -u)" = 0 ] || [[ " $(id -G) " == *" $group "* ]]; then status=OK; fi
    value="1 (group $group)"
  fi
  row "kernel.io_uring_disabled" "$value" "0 (or 1 + io_uring_group)" "$status"
else
  row "kernel.io_uring_disabled" "n/a" "0 (or 1 + io_uring_group)" "n/a"
fi

# A running ringmaster's own limits (/proc/PID/limits is readable by everyone).
for pid in $(pgrep -x ringmaster 2>/dev/null || pidof ringmaster 2>/dev/null); do
  limits=/proc/$pid/limits
  [ -r "$limits" ] || continue
  nofile=$(awk '/^Max open files/ {print $4}' "$limits")
  limit_row "ringmaster[$pid] open files" "$nofile" "$REC_NOFILE"
  memlock_bytes=$(awk '/^Max locked memory/ {print $4}' "$limits")
  if kernel_at_least 5 12; then
    row "ringmaster[$pid] locked memory" "${memlock_bytes:-n/a}" "any (kernel >= 5.12)" OK
  elif [ "$memlock_bytes" = unlimited ]; then
    row "ringmaster[$pid] locked memory" "unlimited" "unlimited" OK
  else
    row "ringmaster[$pid] locked memory" "${memlock_bytes:-n/a}" "unlimited" LOW
  fi
done

echo
if [ "$low_count" -gt 0 ]; then
  echo "$low_count knob(s) LOW; tuning/README.md says what each cures and how to change it."
else
  echo "No knob LOW."
fi
if [ "$strict" = 1 ] && [ "$low_count" -gt 0 ]; then exit 1; fi
exit 0
