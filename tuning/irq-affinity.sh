#!/usr/bin/env bash
# Spreads a NIC's interrupts over a list of CPUs, for matching NIC IRQs to ringmaster's worker
# pinning (tuning/README.md, "IRQ affinity"). Dry run by default: prints each IRQ, its current
# CPUs and what it would write to /proc/irq/N/smp_affinity_list. --apply writes (root only).
#
# Queue q (the number at the end of the IRQ's name, e.g. eth0-TxRx-3, virtio2-input.3,
# mlx5_comp3) goes to the q-th CPU of the list, modulo its length, so the RX and TX interrupts
# of one queue share a CPU. IRQs are found in /sys/class/net/IF/device/msi_irqs (the parent
# PCI device for virtio) and by the interface's name in /proc/interrupts.
#
# Usage: tuning/irq-affinity.sh [--apply] IFACE CPULIST      e.g. eth0 0-3   or   eth0 0,2,4-7
# Exit: 0 done (or dry run printed); 1 nothing to do, not root, or a write failed;
#       2 usage error, no such interface, or a CPU that is not online.
# Not persistent: the kernel forgets it on reboot or driver reload, and irqbalance rewrites it.
set -uo pipefail
export LC_ALL=C

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

apply=0
args=()
for arg in "$@"; do
  case "$arg" in
    --apply) apply=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "irq-affinity.sh: unknown option '$arg'" >&2; usage >&2; exit 2 ;;
    *) args+=("$arg") ;;
  esac
done
if [ "${#args[@]}" -ne 2 ]; then usage >&2; exit 2; fi
iface=${args[0]}
cpulist=${args[1]}

netdir=/sys/class/net/$iface
if [[ $iface == */* || $iface == . || $iface == .. ]] || [ ! -e "$netdir" ]; then
  present=""
  for dir in /sys/class/net/*; do [ -e "$dir" ] && present+="${dir##*/} "; done
  echo "irq-affinity.sh: no such interface: $iface (interfaces here: ${present% })" >&2
  exit 2
fi

# Expands "0-3,6" into "0 1 2 3 6"; fails on anything else.
expand_cpus() {
  local part out=() i
  local IFS=,
  for part in $1; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -le "${BASH_REMATCH[2]}" ]; then
      for ((i = BASH_REMATCH[1]; i <= BASH_REMATCH[2]; i++)); do out+=("$i"); done
    elif [[ $part =~ ^[0-9]+$ ]]; then
      out+=("$part")
    else
      return 1
    fi
  done
  [ "${#out[@]}" -gt 0 ] || return 1
  printf '%s ' "${out[@]}"
}

if ! expanded=$(expand_cpus "$cpulist"); then
  echo "irq-affinity.sh: bad CPU list '$cpulist' (expected e.g. 0-3 or 0,2,4-7)" >&2
  exit 2
fi
read -ra cpus <<<"$expanded"

online=""
if [ -r /sys/devices/system/cpu/online ]; then
  online=" $(expand_cpus "$(cat /sys/devices/system/cpu/online)") "
fi
for cpu in "${cpus[@]}"; do
  if [ -n "$online" ] && [[ $online != *" $cpu "* ]]; then
    echo "irq-affinity.sh: CPU $cpu is not online (online: $(cat /sys/devices/system/cpu/online))" >&2
    exit 2
  fi
done

# IRQ number -> name, from /proc/interrupts (the last field of each numbered line).
declare -A irq_name=()
while read -r first rest; do
  [[ $first =~ ^([0-9]+):$ ]] || continue
  irq_name[${BASH_REMATCH[1]}]=${rest##* }
done </proc/interrupts

declare -A found=()
device=$(readlink -f "$netdir/device" 2>/dev/null || true)
msi_dir=""
if [ -n "$device" ] && [ -d "$device/msi_irqs" ]; then
  msi_dir=$device/msi_irqs
elif [ -n "$device" ] && [[ ${device##*/} == virtio* ]] && [ -d "$device/../msi_irqs" ]; then
  msi_dir=$device/../msi_irqs # virtio-net: the vectors belong to the virtio PCI function
fi
if [ -n "$msi_dir" ]; then
  for entry in "$msi_dir"/*; do
    irq=${entry##*/}
    [[ $irq =~ ^[0-9]+$ ]] || continue
    name=${irq_name[$irq]:-}
    # virtio-net shares its PCI function with a config vector that carries no traffic.
    [[ $name == *-config ]] && continue
    found[$irq]=1
  done
fi
for irq in "${!irq_name[@]}"; do
  name=${irq_name[$irq]}
  # eth0, eth0-TxRx-0, i40e-eth0-TxRx-0, but not eth01-...
  if [[ $name == "$iface" || $name == "$iface"-* || $name == *-"$iface" || $name == *-"$iface"-* ]]; then
    found[$irq]=1
  fi
done

if [ "${#found[@]}" -eq 0 ]; then
  echo "irq-affinity.sh: $iface has no IRQs of its own (a virtual interface such as lo, a bridge" \
    "or a veth has none; a VLAN or bond uses its parent NIC's): nothing to do" >&2
  exit 1
fi

irqbalance=$(pgrep -x irqbalance 2>/dev/null | tr '\n' ' ')
if [ -n "$irqbalance" ]; then
  echo "warning: irqbalance is running (pid ${irqbalance% }): it will move these IRQs again." >&2
  echo "         Stop it (systemctl disable --now irqbalance) or ban them (IRQBALANCE_ARGS=--banirq=N ...)." >&2
fi
if [ "$apply" = 1 ] && [ "$(id -u)" != 0 ]; then
  echo "irq-affinity.sh: --apply writes /proc/irq/N/smp_affinity_list and needs root" >&2
  exit 1
fi

if [ "$apply" = 1 ]; then mode=apply; else mode="dry run, --apply to write"; fi
echo "$iface: ${#found[@]} IRQs over CPUs ${cpus[*]} ($mode)"
printf '%-6s %-32s %-10s %s\n' IRQ NAME NOW WRITE
failed=0
next=0
for irq in $(printf '%s\n' "${!found[@]}" | sort -n); do
  name=${irq_name[$irq]:-?}
  base=${name%%@*}          # mlx5_comp3@pci:0000:... -> mlx5_comp3
  base=${base//"$iface"/}   # drop the interface name: its digits are not a queue number
  if [[ $base =~ ([0-9]+)$ ]]; then
    queue=$((10#${BASH_REMATCH[1]}))
  else
    queue=$next
  fi
  next=$((next + 1))
  cpu=${cpus[queue % ${#cpus[@]}]}
  file=/proc/irq/$irq/smp_affinity_list
  now=$(cat "$file" 2>/dev/null || echo "?")
  printf '%-6s %-32s %-10s echo %s > %s\n' "$irq" "$name" "$now" "$cpu" "$file"
  if [ "$apply" = 1 ]; then
    if ! { printf '%s\n' "$cpu" >"$file"; } 2>/dev/null; then
      # Kernel-managed IRQs (and some drivers) refuse with EIO: their affinity is fixed.
      echo "  failed: the kernel refused (managed IRQ?); left at $now" >&2
      failed=$((failed + 1))
    fi
  fi
done

if [ "$failed" -gt 0 ]; then exit 1; fi
if [ "$apply" = 1 ]; then
  echo "Done. Revert: write the NOW column back the same way, or restart irqbalance."
fi
exit 0
