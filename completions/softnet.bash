# bash completion for softnet and vmtool: subcommands, each command's flags, the values of flags that take
# a few words, and network and VM names asked of the running engine (`softnet network ls --json`, then
# `network list-attached NAME --json`), at the control socket the command line names, if any.
#
# The table in _softnet_grammar is checked against the parser's own (src/cli/grammar.ts) by
# test/integration/completion.test.ts: flags, which of them take a value, and subcommands.

# Sets flags, values (the flags that take a value) and subs (subcommands) for command "$1".
_softnet_grammar() {
  case "$1" in
    'softnet') flags='--vm-fd --vm-tap --vm-netns --vm-ifname --vm-socket --vm-mac-address --vm-name --vm-external-mac --vm-net-type --bridge-interface --allow --block --reject --expose --dhcp-host --network --subnet --dhcp-range --lease-time --bootpd-lease-time --host-link --mtu --domain --dhcp-route --uplink --nat-ports --nat-flows-per-vm --ipv6 --ipv6-prefix --ipv6-only --nat64 --nat64-prefix --state-dir --control-socket --reattach-grace --user --group --log-format --metrics -h --help --version'; values='--vm-fd --vm-tap --vm-netns --vm-ifname --vm-socket --vm-mac-address --vm-name --vm-external-mac --vm-net-type --bridge-interface --allow --block --expose --dhcp-host --network --subnet --dhcp-range --lease-time --bootpd-lease-time --host-link --mtu --domain --dhcp-route --uplink --nat-ports --nat-flows-per-vm --ipv6 --ipv6-prefix --nat64-prefix --state-dir --control-socket --reattach-grace --user --group --log-format --metrics'; subs='serve network show capture demo' ;;
    'softnet serve') flags='--config --control-group --state-dir --control-socket --reattach-grace --user --group --log-format --metrics --subnet --dhcp-range --lease-time --bootpd-lease-time --host-link --mtu --domain --dhcp-route --uplink --nat-ports --nat-flows-per-vm --ipv6 --ipv6-prefix --ipv6-only --nat64 --nat64-prefix -h --help'; values='--config --control-group --state-dir --control-socket --reattach-grace --user --group --log-format --metrics --subnet --dhcp-range --lease-time --bootpd-lease-time --host-link --mtu --domain --dhcp-route --uplink --nat-ports --nat-flows-per-vm --ipv6 --ipv6-prefix --nat64-prefix'; subs='' ;;
    'softnet network') flags='-h --help'; values=''; subs='add ls list rm remove list-attached reserve' ;;
    'softnet network add') flags='--cidr --type --dhcp-range --host-link --lease-time --mtu --domain --dhcp-route --uplink --nat-ports --nat-flows-per-vm --ipv6 --ipv6-prefix --ipv6-only --nat64 --nat64-prefix --bridge-interface --control-socket --json -h --help'; values='--cidr --type --dhcp-range --host-link --lease-time --mtu --domain --dhcp-route --uplink --nat-ports --nat-flows-per-vm --ipv6 --ipv6-prefix --nat64-prefix --bridge-interface --control-socket'; subs='' ;;
    'softnet network ls') flags='--control-socket --json -h --help'; values='--control-socket'; subs='' ;;
    'softnet network rm') flags='--control-socket --json -h --help'; values='--control-socket'; subs='' ;;
    'softnet network list-attached') flags='--control-socket --json -h --help'; values='--control-socket'; subs='' ;;
    'softnet network reserve') flags='--control-socket --json -h --help'; values='--control-socket'; subs='' ;;
    'softnet show') flags='--control-socket --json -h --help'; values='--control-socket'; subs='' ;;
    'softnet capture') flags='-w -c --control-socket -h --help'; values='-w -c --control-socket'; subs='' ;;
    'softnet demo') flags='-h --help'; values=''; subs='' ;;
    'vmtool') flags='-h --help --version'; values=''; subs='run' ;;
    'vmtool run') flags='--net-softnet --net-softnet-allow --net-softnet-block --net-softnet-expose --net-softnet-arg --net-softnet-socket --kernel --initrd --append --mac --memory --accel -h --help'; values='--net-softnet-allow --net-softnet-block --net-softnet-expose --net-softnet-arg --kernel --initrd --append --mac --memory --accel'; subs='' ;;
    *) flags=''; values=''; subs='' ;;
  esac
}

# The name a subcommand's word stands for: its aliases are typed, the grammar knows the main name.
_softnet_canonical() {
  case "$1" in
    list) echo ls ;;
    remove) echo rm ;;
    *) echo "$1" ;;
  esac
}

# The names the running engine knows: "networks", or "vms" (of every network). Nothing when none answers.
_softnet_ask() {
  local exe=$1 what=$2 socket=$3 net
  local -a at=()
  [[ -n $socket ]] && at=(--control-socket "$socket")
  local nets
  nets=$("$exe" network ls --json "${at[@]}" 2>/dev/null | sed -n 's/^ *"name": "\(.*\)",\{0,1\}$/\1/p')
  if [[ $what == networks ]]; then
    printf '%s\n' "$nets"
    return
  fi
  for net in $nets; do
    "$exe" network list-attached "$net" --json "${at[@]}" 2>/dev/null | sed -n 's/^ *"vm": "\(.*\)",\{0,1\}$/\1/p'
  done
}

_softnet() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local exe=${COMP_WORDS[0]}
  local cmd=${exe##*/} flags values subs word socket='' leading=1 i
  local -a words=()
  _softnet_grammar "$cmd"
  # Walk what is typed before the cursor: leading words name subcommands, a flag that takes a value
  # consumes the next word, the other words are the command's own (NAME, VM, ...).
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    if ((leading)) && [[ -n $subs && " $subs " == *" $word "* ]]; then
      cmd="$cmd $(_softnet_canonical "$word")"
      _softnet_grammar "$cmd"
      continue
    fi
    leading=0
    if [[ " $values " == *" $word "* ]]; then
      ((i++))
      [[ $word == --control-socket ]] && socket=${COMP_WORDS[i]}
    elif [[ $word == --control-socket=* ]]; then
      socket=${word#*=}
    elif [[ $word != -* ]]; then
      words+=("$word")
    fi
  done

  COMPREPLY=()
  if ((COMP_CWORD > 1)) && [[ " $values " == *" $prev "* ]]; then
    case "$prev" in
      --vm-net-type) COMPREPLY=($(compgen -W 'shared host disconnected bridge' -- "$cur")) ;;
      --type) COMPREPLY=($(compgen -W 'shared host bridge' -- "$cur")) ;;
      --log-format) COMPREPLY=($(compgen -W 'text json' -- "$cur")) ;;
      --accel) COMPREPLY=($(compgen -W 'kvm tcg' -- "$cur")) ;;
      --network) COMPREPLY=($(compgen -W "$(_softnet_ask "$exe" networks "$socket")" -- "$cur")) ;;
      --uplink | --bridge-interface | --vm-tap) COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")) ;;
      --vm-netns | --vm-socket | --state-dir | --control-socket | --config | --kernel | --initrd | -w)
        COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
    return
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  elif ((leading)) && [[ -n $subs ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  elif ((${#words[@]} == 0)); then
    case "$cmd" in
      'softnet network rm' | 'softnet network list-attached' | 'softnet network reserve')
        COMPREPLY=($(compgen -W "$(_softnet_ask "$exe" networks "$socket")" -- "$cur")) ;;
      'softnet show' | 'softnet capture')
        COMPREPLY=($(compgen -W "$(_softnet_ask "$exe" vms "$socket")" -- "$cur")) ;;
    esac
  fi
}

complete -F _softnet softnet vmtool
