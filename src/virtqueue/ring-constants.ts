/** Ring layout constants (virtio 1.3 §2.7, §2.8). Constants only. */

// Split virtqueue descriptor flags (§2.7.5).
/** The buffer continues via the `next` field. */
export const VIRTQ_DESC_F_NEXT = 1;
/** The buffer is device-writable (otherwise device-readable). */
export const VIRTQ_DESC_F_WRITE = 2;
/** The buffer holds a table of indirect descriptors (§2.7.5.3). */
export const VIRTQ_DESC_F_INDIRECT = 4;

/** Available ring `flags`: the driver does not want used buffer notifications (§2.7.7). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Used ring `flags`: the device does not want available buffer notifications (§2.7.10). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Bytes per split descriptor: le64 addr, le32 len, le16 flags, le16 next. */
export const VIRTQ_DESC_SIZE = 16;
/** Bytes per used ring element: le32 id, le32 len. */
export const VIRTQ_USED_ELEM_SIZE = 8;
/** Largest split queue size (§2.7). */
export const VIRTQ_SPLIT_MAX_SIZE = 32768;

// Packed virtqueue (§2.8). The NEXT/WRITE/INDIRECT bits have the same values as the split ones.
/** The buffer continues in the next ring slot (§2.8.6). */
export const VIRTQ_PACKED_DESC_F_NEXT = 1;
/** Available descriptor: the element is device-writable; used descriptor: the device wrote data (§2.8.3). */
export const VIRTQ_PACKED_DESC_F_WRITE = 2;
/** The element is a table of indirect descriptors (§2.8.7). */
export const VIRTQ_PACKED_DESC_F_INDIRECT = 4;
/** Set to the driver's wrap counter when a descriptor is made available (§2.8.1). */
export const VIRTQ_PACKED_DESC_F_AVAIL = 1 << 7;
/** Set to the device's wrap counter (with AVAIL equal to it) when a descriptor is used (§2.8.1). */
export const VIRTQ_PACKED_DESC_F_USED = 1 << 15;
/** Bytes per packed descriptor: le64 addr, le32 len, le16 id, le16 flags. */
export const VIRTQ_PACKED_DESC_SIZE = 16;
/** Bytes per event suppression structure: le16 desc (off_wrap), le16 flags (§2.8.10). */
export const VIRTQ_PACKED_EVENT_SUPPRESS_SIZE = 4;
/** Bit of `off_wrap` holding the wrap counter; bits 0-14 are the ring offset. */
export const VIRTQ_PACKED_EVENT_F_WRAP_CTR = 15;
/** Largest packed queue size (§2.8); it need not be a power of 2. */
export const VIRTQ_PACKED_MAX_SIZE = 32768;

/** Event suppression `flags` (§2.8.10): notifications enabled. */
export const RING_EVENT_FLAGS_ENABLE = 0x0;
/** Event suppression `flags`: notifications disabled. */
export const RING_EVENT_FLAGS_DISABLE = 0x1;
/** Event suppression `flags`: notify only for the descriptor `off_wrap` names (needs EVENT_IDX). */
export const RING_EVENT_FLAGS_DESC = 0x2;

/**
 * Default bound on the descriptors of one chain, those of an indirect table
 * included. The spec asks drivers to keep chains within the queue size
 * (§2.7.5.3.1), but Linux puts a scatter-gather list of one descriptor per page
 * into an indirect table whatever the queue size; QEMU accepts up to 1024.
 */
export const DEFAULT_MAX_CHAIN = 1024;
