// Why a frame was dropped: a small numeric enum for the hot path and a name for each, for logs and metrics.

const reasons = [
  ['NONE', 'none'],
  ['RUNT', 'frame-too-short'],
  ['OVERSIZE', 'frame-too-long'],
  ['NOT_ETHERNET_II', 'not-ethernet-ii'],
  ['VLAN', 'vlan-tagged'],
  ['IPV6', 'ipv6-unsupported'],
  ['LLDP', 'lldp'],
  ['ETHERTYPE_UNKNOWN', 'ethertype-unknown'],
  ['SRC_MAC_SPOOFED', 'src-mac-spoofed'],
  ['DST_MAC_FOREIGN', 'dst-mac-not-gateway'],
  ['ARP_MALFORMED', 'arp-malformed'],
  ['ARP_SPOOFED', 'arp-sender-spoofed'],
  ['ARP_NOT_GATEWAY', 'arp-target-not-gateway'],
  ['ARP_ANNOUNCE', 'arp-announce'],
  ['ARP_REPLY', 'arp-unsolicited-reply'],
  ['IP_TRUNCATED', 'ipv4-truncated'],
  ['IP_BAD_VERSION', 'ipv4-bad-version'],
  ['IP_BAD_IHL', 'ipv4-bad-header-length'],
  ['IP_BAD_LENGTH', 'ipv4-bad-total-length'],
  ['IP_BAD_CHECKSUM', 'ipv4-bad-checksum'],
  ['IP_SRC_SPOOFED', 'ipv4-src-spoofed'],
  ['IP_NO_LEASE', 'ipv4-before-lease'],
  ['IP_FRAGMENT', 'ipv4-fragment-to-gateway'],
  ['UDP_MALFORMED', 'udp-malformed'],
  ['UDP_BAD_CHECKSUM', 'udp-bad-checksum'],
  ['ICMP_MALFORMED', 'icmp-malformed'],
  ['ICMP_BAD_CHECKSUM', 'icmp-bad-checksum'],
  ['GATEWAY_ICMP_TYPE', 'icmp-to-gateway-not-echo'],
  ['DHCP_TRUNCATED', 'dhcp-truncated'],
  ['DHCP_BAD_OP', 'dhcp-not-bootrequest'],
  ['DHCP_BAD_HW', 'dhcp-not-ethernet'],
  ['DHCP_BAD_COOKIE', 'dhcp-bad-magic-cookie'],
  ['DHCP_OPTION_OVERRUN', 'dhcp-option-overrun'],
  ['DHCP_BAD_OPTION', 'dhcp-bad-option'],
  ['DHCP_BAD_OVERLOAD', 'dhcp-bad-option-overload'],
  ['DHCP_TOO_MANY_OPTIONS', 'dhcp-too-many-options'],
  ['DHCP_NO_TYPE', 'dhcp-no-message-type'],
  ['DHCP_BAD_TYPE', 'dhcp-unexpected-message-type'],
  ['DHCP_CHADDR_SPOOFED', 'dhcp-chaddr-spoofed'],
  ['DHCP_RELAYED', 'dhcp-relayed'],
  ['DHCP_OTHER_SERVER', 'dhcp-for-other-server'],
  ['DHCP_POOL_EXHAUSTED', 'dhcp-pool-exhausted'],
  ['DHCP_NO_BINDING', 'dhcp-no-binding'],
  ['DHCP_FROM_SERVER_PORT', 'dhcp-server-message-from-vm'],
  ['DHCP_NOT_CLIENT_PORT', 'dhcp-not-from-port-68'],
  ['NO_ROUTE', 'no-route'],
  ['POLICY_BLOCKED', 'dst-blocked-by-policy'],
  ['OTHER_VM', 'dst-other-vm'],
  ['NO_SUCH_VM', 'dst-no-such-vm'],
  ['HOST_ONLY', 'dst-beyond-host-only-vm'],
  ['VM_DISCONNECTED', 'vm-disconnected'],
  ['TTL_EXCEEDED', 'ttl-exceeded'],
  ['TOO_BIG', 'too-big-for-uplink'],
  ['TCP_MALFORMED', 'tcp-malformed'],
  ['TCP_BAD_CHECKSUM', 'tcp-bad-checksum'],
  ['TCP_BAD_FLAGS', 'tcp-bad-flags'],
  ['NAT_TCP_NOT_SYN', 'nat-tcp-no-flow'],
  ['NAT_VM_SHARE_FULL', 'nat-vm-share-full'],
  ['NAT_PORTS_EXHAUSTED', 'nat-ports-exhausted'],
  ['NAT_ICMP_TYPE', 'nat-icmp-type-unsupported'],
  ['UPLINK_NOT_OURS', 'uplink-not-nat-address'],
  ['UPLINK_NO_MAPPING', 'uplink-no-mapping'],
  ['UPLINK_FILTERED', 'uplink-filtered'],
  ['UPLINK_FRAGMENT', 'uplink-fragment-unknown'],
  ['UPLINK_VM_GONE', 'uplink-vm-without-lease'],
  ['FORWARD_NO_ADDRESS', 'forward-vm-without-address'],
  ['UPLINK_GSO', 'uplink-aggregate-not-segmented'],
  ['GSO_UNCUT', 'aggregate-not-segmented'],
  ['BAD_OFFLOAD', 'bad-checksum-offload'],
  ['UPLINK_BAD_OFFLOAD', 'uplink-bad-checksum-offload'],
  ['HOST_ARP_NOT_VM', 'host-arp-not-for-a-vm'],
  ['HOST_GROUP', 'host-broadcast-or-multicast'],
  ['HOST_DST_UNKNOWN', 'host-dst-not-a-vm'],
  ['LAN_DST_NOT_VM', 'lan-dst-not-a-vm'],
  ['LAN_SRC_IS_VM', 'lan-src-is-a-vm'],
  ['LAN_GSO', 'lan-aggregate-not-segmented'],
  ['LAN_BAD_OFFLOAD', 'lan-bad-checksum-offload'],
  ['LAN_DHCP_NOT_VM', 'lan-dhcp-reply-not-for-a-vm'],
  ['DHCP_UNSOLICITED', 'dhcp-reply-unsolicited'],
  ['DHCP_ACK_BAD_ADDRESS', 'dhcp-ack-bad-address'],
  ['DHCP_ACK_NO_LEASE', 'dhcp-ack-without-lease-time'],
  ['DST_MAC_OWN', 'dst-mac-own'],
  ['LAN_TOO_BIG', 'too-big-for-lan'],
  ['VM_DOWN', 'vm-port-closed'],
  ['TX_FULL', 'tx-queue-full'],
  ['UPLINK_HELD', 'uplink-unavailable'],
] as const;

type Key = (typeof reasons)[number][0];

/** Drop reason codes, e.g. Drop.IP_BAD_CHECKSUM. */
export const Drop = Object.fromEntries(reasons.map(([k], i) => [k, i])) as { readonly [K in Key]: number };

/** The name of each reason, indexed by code. */
export const DROP_NAMES: readonly string[] = reasons.map(([, name]) => name);

/** How many reasons there are: the length of a counter array. */
export const DROP_COUNT = reasons.length;

/** The counters of `drops` (indexed by code) that are not zero, keyed by reason name. */
export function dropsByName(drops: ArrayLike<number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < drops.length; i++) if (drops[i] > 0) out[DROP_NAMES[i]] = drops[i];
  return out;
}
