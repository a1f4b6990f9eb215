/**
 * Constants of the virtio sound device (virtio 1.3 §5.14) and the generic
 * virtio feature bits it uses (§6), named exactly as in the spec.
 */

/** §5.14.1 */
export const VIRTIO_ID_SOUND = 25;

/** §5.14.2 virtqueue indices. */
export const VIRTIO_SND_VQ_CONTROL = 0;
export const VIRTIO_SND_VQ_EVENT = 1;
export const VIRTIO_SND_VQ_TX = 2;
export const VIRTIO_SND_VQ_RX = 3;
export const VIRTIO_SND_VQ_MAX = 4;

/** §5.14.3 device feature bits. */
export const VIRTIO_SND_F_CTLS = 0;

/** §6 reserved feature bits the device offers. */
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;
export const VIRTIO_F_RING_PACKED = 34;
export const VIRTIO_F_IN_ORDER = 35;
export const VIRTIO_F_NOTIFICATION_DATA = 38;
export const VIRTIO_F_RING_RESET = 40;

/** §2.1 device status bits. */
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
export const VIRTIO_CONFIG_S_DRIVER = 2;
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
export const VIRTIO_CONFIG_S_NEEDS_RESET = 0x40;
export const VIRTIO_CONFIG_S_FAILED = 0x80;

/** §5.14.6 request codes. */
export const VIRTIO_SND_R_JACK_INFO = 1;
export const VIRTIO_SND_R_JACK_REMAP = 2;
export const VIRTIO_SND_R_PCM_INFO = 0x0100;
export const VIRTIO_SND_R_PCM_SET_PARAMS = 0x0101;
export const VIRTIO_SND_R_PCM_PREPARE = 0x0102;
export const VIRTIO_SND_R_PCM_RELEASE = 0x0103;
export const VIRTIO_SND_R_PCM_START = 0x0104;
export const VIRTIO_SND_R_PCM_STOP = 0x0105;
export const VIRTIO_SND_R_CHMAP_INFO = 0x0200;
export const VIRTIO_SND_R_CTL_INFO = 0x0300;
export const VIRTIO_SND_R_CTL_ENUM_ITEMS = 0x0301;
export const VIRTIO_SND_R_CTL_READ = 0x0302;
export const VIRTIO_SND_R_CTL_WRITE = 0x0303;
export const VIRTIO_SND_R_CTL_TLV_READ = 0x0304;
export const VIRTIO_SND_R_CTL_TLV_WRITE = 0x0305;
export const VIRTIO_SND_R_CTL_TLV_COMMAND = 0x0306;

/** §5.14.6 event codes. */
export const VIRTIO_SND_EVT_JACK_CONNECTED = 0x1000;
export const VIRTIO_SND_EVT_JACK_DISCONNECTED = 0x1001;
export const VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED = 0x1100;
export const VIRTIO_SND_EVT_PCM_XRUN = 0x1101;
export const VIRTIO_SND_EVT_CTL_NOTIFY = 0x1200;

/** §5.14.6 status codes. */
export const VIRTIO_SND_S_OK = 0x8000;
export const VIRTIO_SND_S_BAD_MSG = 0x8001;
export const VIRTIO_SND_S_NOT_SUPP = 0x8002;
export const VIRTIO_SND_S_IO_ERR = 0x8003;

/** §5.14.6 data flow directions. */
export const VIRTIO_SND_D_OUTPUT = 0;
export const VIRTIO_SND_D_INPUT = 1;

/** §5.14.6.4.1 jack features. */
export const VIRTIO_SND_JACK_F_REMAP = 0;

/** §5.14.6.6.2 PCM stream features. */
export const VIRTIO_SND_PCM_F_SHMEM_HOST = 0;
export const VIRTIO_SND_PCM_F_SHMEM_GUEST = 1;
export const VIRTIO_SND_PCM_F_MSG_POLLING = 2;
export const VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS = 3;
export const VIRTIO_SND_PCM_F_EVT_XRUNS = 4;

/** §5.14.6.6.2 PCM sample formats. */
export const VIRTIO_SND_PCM_FMT_IMA_ADPCM = 0;
export const VIRTIO_SND_PCM_FMT_MU_LAW = 1;
export const VIRTIO_SND_PCM_FMT_A_LAW = 2;
export const VIRTIO_SND_PCM_FMT_S8 = 3;
export const VIRTIO_SND_PCM_FMT_U8 = 4;
export const VIRTIO_SND_PCM_FMT_S16 = 5;
export const VIRTIO_SND_PCM_FMT_U16 = 6;
export const VIRTIO_SND_PCM_FMT_S18_3 = 7;
export const VIRTIO_SND_PCM_FMT_U18_3 = 8;
export const VIRTIO_SND_PCM_FMT_S20_3 = 9;
export const VIRTIO_SND_PCM_FMT_U20_3 = 10;
export const VIRTIO_SND_PCM_FMT_S24_3 = 11;
export const VIRTIO_SND_PCM_FMT_U24_3 = 12;
export const VIRTIO_SND_PCM_FMT_S20 = 13;
export const VIRTIO_SND_PCM_FMT_U20 = 14;
export const VIRTIO_SND_PCM_FMT_S24 = 15;
export const VIRTIO_SND_PCM_FMT_U24 = 16;
export const VIRTIO_SND_PCM_FMT_S32 = 17;
export const VIRTIO_SND_PCM_FMT_U32 = 18;
export const VIRTIO_SND_PCM_FMT_FLOAT = 19;
export const VIRTIO_SND_PCM_FMT_FLOAT64 = 20;
export const VIRTIO_SND_PCM_FMT_DSD_U8 = 21;
export const VIRTIO_SND_PCM_FMT_DSD_U16 = 22;
export const VIRTIO_SND_PCM_FMT_DSD_U32 = 23;
export const VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME = 24;
export const VIRTIO_SND_PCM_FMT_COUNT = 25;

/** §5.14.6.6.2 PCM frame rates. */
export const VIRTIO_SND_PCM_RATE_5512 = 0;
export const VIRTIO_SND_PCM_RATE_8000 = 1;
export const VIRTIO_SND_PCM_RATE_11025 = 2;
export const VIRTIO_SND_PCM_RATE_16000 = 3;
export const VIRTIO_SND_PCM_RATE_22050 = 4;
export const VIRTIO_SND_PCM_RATE_32000 = 5;
export const VIRTIO_SND_PCM_RATE_44100 = 6;
export const VIRTIO_SND_PCM_RATE_48000 = 7;
export const VIRTIO_SND_PCM_RATE_64000 = 8;
export const VIRTIO_SND_PCM_RATE_88200 = 9;
export const VIRTIO_SND_PCM_RATE_96000 = 10;
export const VIRTIO_SND_PCM_RATE_176400 = 11;
export const VIRTIO_SND_PCM_RATE_192000 = 12;
export const VIRTIO_SND_PCM_RATE_384000 = 13;
export const VIRTIO_SND_PCM_RATE_12000 = 14;
export const VIRTIO_SND_PCM_RATE_24000 = 15;
export const VIRTIO_SND_PCM_RATE_COUNT = 16;

/** Frames per second of each VIRTIO_SND_PCM_RATE_* value, by index. */
export const PCM_RATE_HZ: readonly number[] = [
  5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000, 176400, 192000, 384000, 12000,
  24000,
];

/**
 * Bits per sample and bytes per sample in memory of each format, by index
 * (§5.14.6.6.2, the "width / physical width" comments). IMA ADPCM packs two
 * samples per byte: its physical width is 4 bits.
 */
export const PCM_FORMAT_INFO: readonly { readonly bits: number; readonly physicalBits: number }[] = [
  { bits: 4, physicalBits: 4 }, // IMA_ADPCM
  { bits: 8, physicalBits: 8 }, // MU_LAW
  { bits: 8, physicalBits: 8 }, // A_LAW
  { bits: 8, physicalBits: 8 }, // S8
  { bits: 8, physicalBits: 8 }, // U8
  { bits: 16, physicalBits: 16 }, // S16
  { bits: 16, physicalBits: 16 }, // U16
  { bits: 18, physicalBits: 24 }, // S18_3
  { bits: 18, physicalBits: 24 }, // U18_3
  { bits: 20, physicalBits: 24 }, // S20_3
  { bits: 20, physicalBits: 24 }, // U20_3
  { bits: 24, physicalBits: 24 }, // S24_3
  { bits: 24, physicalBits: 24 }, // U24_3
  { bits: 20, physicalBits: 32 }, // S20
  { bits: 20, physicalBits: 32 }, // U20
  { bits: 24, physicalBits: 32 }, // S24
  { bits: 24, physicalBits: 32 }, // U24
  { bits: 32, physicalBits: 32 }, // S32
  { bits: 32, physicalBits: 32 }, // U32
  { bits: 32, physicalBits: 32 }, // FLOAT
  { bits: 64, physicalBits: 64 }, // FLOAT64
  { bits: 8, physicalBits: 8 }, // DSD_U8
  { bits: 16, physicalBits: 16 }, // DSD_U16
  { bits: 32, physicalBits: 32 }, // DSD_U32
  { bits: 32, physicalBits: 32 }, // IEC958_SUBFRAME
];

/** §5.14.6.9.1 channel positions. */
export const VIRTIO_SND_CHMAP_NONE = 0;
export const VIRTIO_SND_CHMAP_NA = 1;
export const VIRTIO_SND_CHMAP_MONO = 2;
export const VIRTIO_SND_CHMAP_FL = 3;
export const VIRTIO_SND_CHMAP_FR = 4;
export const VIRTIO_SND_CHMAP_RL = 5;
export const VIRTIO_SND_CHMAP_RR = 6;
export const VIRTIO_SND_CHMAP_FC = 7;
export const VIRTIO_SND_CHMAP_LFE = 8;
export const VIRTIO_SND_CHMAP_SL = 9;
export const VIRTIO_SND_CHMAP_SR = 10;
export const VIRTIO_SND_CHMAP_RC = 11;
export const VIRTIO_SND_CHMAP_FLC = 12;
export const VIRTIO_SND_CHMAP_FRC = 13;
export const VIRTIO_SND_CHMAP_RLC = 14;
export const VIRTIO_SND_CHMAP_RRC = 15;
export const VIRTIO_SND_CHMAP_FLW = 16;
export const VIRTIO_SND_CHMAP_FRW = 17;
export const VIRTIO_SND_CHMAP_FLH = 18;
export const VIRTIO_SND_CHMAP_FCH = 19;
export const VIRTIO_SND_CHMAP_FRH = 20;
export const VIRTIO_SND_CHMAP_TC = 21;
export const VIRTIO_SND_CHMAP_TFL = 22;
export const VIRTIO_SND_CHMAP_TFR = 23;
export const VIRTIO_SND_CHMAP_TFC = 24;
export const VIRTIO_SND_CHMAP_TRL = 25;
export const VIRTIO_SND_CHMAP_TRR = 26;
export const VIRTIO_SND_CHMAP_TRC = 27;
export const VIRTIO_SND_CHMAP_TFLC = 28;
export const VIRTIO_SND_CHMAP_TFRC = 29;
export const VIRTIO_SND_CHMAP_TSL = 30;
export const VIRTIO_SND_CHMAP_TSR = 31;
export const VIRTIO_SND_CHMAP_LLFE = 32;
export const VIRTIO_SND_CHMAP_RLFE = 33;
export const VIRTIO_SND_CHMAP_BC = 34;
export const VIRTIO_SND_CHMAP_BLC = 35;
export const VIRTIO_SND_CHMAP_BRC = 36;
export const VIRTIO_SND_CHMAP_MAX_SIZE = 18;

/** §5.14.6.10 control element roles, types, access rights and event masks. */
export const VIRTIO_SND_CTL_ROLE_UNDEFINED = 0;
export const VIRTIO_SND_CTL_ROLE_VOLUME = 1;
export const VIRTIO_SND_CTL_ROLE_MUTE = 2;
export const VIRTIO_SND_CTL_ROLE_GAIN = 3;

export const VIRTIO_SND_CTL_TYPE_BOOLEAN = 0;
export const VIRTIO_SND_CTL_TYPE_INTEGER = 1;
export const VIRTIO_SND_CTL_TYPE_INTEGER64 = 2;
export const VIRTIO_SND_CTL_TYPE_ENUMERATED = 3;
export const VIRTIO_SND_CTL_TYPE_BYTES = 4;
export const VIRTIO_SND_CTL_TYPE_IEC958 = 5;

export const VIRTIO_SND_CTL_ACCESS_READ = 0;
export const VIRTIO_SND_CTL_ACCESS_WRITE = 1;
export const VIRTIO_SND_CTL_ACCESS_VOLATILE = 2;
export const VIRTIO_SND_CTL_ACCESS_INACTIVE = 3;
export const VIRTIO_SND_CTL_ACCESS_TLV_READ = 4;
export const VIRTIO_SND_CTL_ACCESS_TLV_WRITE = 5;
export const VIRTIO_SND_CTL_ACCESS_TLV_COMMAND = 6;

export const VIRTIO_SND_CTL_EVT_MASK_VALUE = 0;
export const VIRTIO_SND_CTL_EVT_MASK_INFO = 1;
export const VIRTIO_SND_CTL_EVT_MASK_TLV = 2;

/** Largest `count` per control type (§5.14.6.10.1.1 device requirements). */
export const VIRTIO_SND_CTL_MAX_COUNT: readonly number[] = [128, 128, 64, 128, 512, 1];

// ---- transports (§4.1 virtio over PCI bus, §4.2 virtio over MMIO) ----------------

/** §4.1.2 PCI vendor ID of every virtio device; the spec gives the number without a name. */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** §4.1.2 a non-transitional device's PCI Device ID is 0x1040 plus its virtio device ID. */
export const VIRTIO_PCI_MODERN_DEVICE_ID_BASE = 0x1040;

/** §4.1.4 virtio structure PCI capabilities: cfg_type values. */
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
export const VIRTIO_PCI_CAP_PCI_CFG = 5;
export const VIRTIO_PCI_CAP_SHARED_MEMORY_CFG = 8;
export const VIRTIO_PCI_CAP_VENDOR_CFG = 9;

/** §4.1.4 struct virtio_pci_cap: byte offsets of its fields (and of the two structures that extend it). */
export const VIRTIO_PCI_CAP = {
  cap_vndr: 0,
  cap_next: 1,
  cap_len: 2,
  cfg_type: 3,
  bar: 4,
  id: 5,
  offset: 8,
  length: 12,
  /** §4.1.4.4 struct virtio_pci_notify_cap. */
  notify_off_multiplier: 16,
  /** §4.1.4.9 struct virtio_pci_cfg_cap. */
  pci_cfg_data: 16,
} as const;
/** §4.1.4 sizes of struct virtio_pci_cap, virtio_pci_notify_cap and virtio_pci_cfg_cap. */
export const VIRTIO_PCI_CAP_SIZE = 16;
export const VIRTIO_PCI_NOTIFY_CAP_SIZE = 20;
export const VIRTIO_PCI_CFG_CAP_SIZE = 20;

/** §4.1.4.3 struct virtio_pci_common_cfg: byte offsets of its fields. */
export const VIRTIO_PCI_COMMON_CFG = {
  device_feature_select: 0x00,
  device_feature: 0x04,
  driver_feature_select: 0x08,
  driver_feature: 0x0c,
  config_msix_vector: 0x10,
  num_queues: 0x12,
  device_status: 0x14,
  config_generation: 0x15,
  queue_select: 0x16,
  queue_size: 0x18,
  queue_msix_vector: 0x1a,
  queue_enable: 0x1c,
  queue_notify_off: 0x1e,
  queue_desc: 0x20,
  queue_driver: 0x28,
  queue_device: 0x30,
  queue_notif_config_data: 0x38,
  queue_reset: 0x3a,
  admin_queue_index: 0x3c,
  admin_queue_num: 0x3e,
} as const;
/** §4.1.4.3 size of struct virtio_pci_common_cfg, through admin_queue_num. */
export const VIRTIO_PCI_COMMON_CFG_SIZE = 0x40;

/** §4.1.4.5 ISR status bits (the spec names them "Queue Interrupt" and "Device Configuration Interrupt"). */
export const VIRTIO_PCI_ISR_QUEUE = 0x1;
export const VIRTIO_PCI_ISR_CONFIG = 0x2;

/** §4.1.5.1.2 the MSI-X vector value meaning "no interrupt". */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** §4.2.2 the MMIO MagicValue: "virt" in little-endian ASCII. */
export const VIRTIO_MMIO_MAGIC_VALUE = 0x74726976;
/** §4.2.2 the MMIO Version of non-legacy devices. */
export const VIRTIO_MMIO_VERSION = 2;

/** §4.2.2 MMIO device register layout: offsets, named as in the spec's table. */
export const VIRTIO_MMIO = {
  MagicValue: 0x000,
  Version: 0x004,
  DeviceID: 0x008,
  VendorID: 0x00c,
  DeviceFeatures: 0x010,
  DeviceFeaturesSel: 0x014,
  DriverFeatures: 0x020,
  DriverFeaturesSel: 0x024,
  QueueSel: 0x030,
  QueueNumMax: 0x034,
  QueueNum: 0x038,
  QueueReady: 0x044,
  QueueNotify: 0x050,
  InterruptStatus: 0x060,
  InterruptACK: 0x064,
  Status: 0x070,
  QueueDescLow: 0x080,
  QueueDescHigh: 0x084,
  QueueDriverLow: 0x090,
  QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0,
  QueueDeviceHigh: 0x0a4,
  SHMSel: 0x0ac,
  SHMLenLow: 0x0b0,
  SHMLenHigh: 0x0b4,
  SHMBaseLow: 0x0b8,
  SHMBaseHigh: 0x0bc,
  QueueReset: 0x0c0,
  ConfigGeneration: 0x0fc,
  Config: 0x100,
} as const;

/** §4.2.2 InterruptStatus bits: "Used Buffer Notification" and "Configuration Change Notification". */
export const VIRTIO_MMIO_INT_VRING = 0x1;
export const VIRTIO_MMIO_INT_CONFIG = 0x2;
