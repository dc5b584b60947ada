// virtio_net_hdr (virtio spec 5.1.6; PACKET_VNET_HDR, IFF_VNET_HDR): the 10-byte header the kernel puts
// before a packet to say what offloads left undone. Little-endian fields.

export const VNET = {
  FLAGS: 0,
  GSO_TYPE: 1,
  HDR_LEN: 2,
  GSO_SIZE: 4,
  CSUM_START: 6,
  CSUM_OFFSET: 8,
} as const;
export const VNET_HDR_LEN = VNET.CSUM_OFFSET + 2;

/** The transport checksum is not filled in: sum from csum_start and store at csum_start + csum_offset. */
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_GSO_NONE = 0;
/** The checksum was verified (or is sure); nothing to do. */
export const VNET_F_DATA_VALID = 2;
/** A TCP/IPv4 aggregate to cut into gso_size segments; 0x80 marks ECN, which segmentation keeps. */
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_ECN = 0x80;
/** A TCP/IPv6 aggregate (VIRTIO_NET_HDR_GSO_TCPV6), ECN as for IPv4. */
export const VNET_GSO_TCPV6 = 4;
