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
