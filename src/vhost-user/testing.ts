/**
 * virtio-snd/testing/vhost-user: the vhost-user back-end without a socket.
 * MockTransport plays the front-end in memory (fake file descriptors that show
 * leaks and double closes, guest memory as an ArrayBuffer); attach it to a
 * VhostUserBackend and deliver QEMU's messages. Neither imports a Node
 * built-in at run time, but they belong to the vhost-user layer, which is
 * Node-only (its types reach the native addon's), so this is an entry of its
 * own rather than part of "virtio-snd/testing".
 */
export { MockTransport, type SentMessage } from "./mock-transport.js";
export { VhostUserBackend, type LogEntry, type LogLevel, type VhostUserBackendOptions } from "./backend.js";
export type { MappedRegion, VhostMessage, VhostTransport, VhostTransportHandler } from "./transport.js";
