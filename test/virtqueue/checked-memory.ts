import type { GuestMemory } from "../../src/memory/guest-memory.js";

/**
 * Guest memory that records every access touching bytes outside memory (the
 * inner memory then throws, or the view is null). The rings check buffers
 * with contains() before using them, so `outside` should stay empty.
 */
export class CheckedMemory implements GuestMemory {
  readonly outside: string[] = [];
  constructor(readonly inner: GuestMemory) {}

  private check(op: string, addr: number, length: number): void {
    if (!this.inner.contains(addr, length)) this.outside.push(`${op} ${length} bytes at ${addr}`);
  }
  contains(addr: number, length: number): boolean {
    return this.inner.contains(addr, length);
  }
  read(addr: number, dest: Uint8Array, destOffset: number, length: number): void {
    this.check("read", addr, length);
    this.inner.read(addr, dest, destOffset, length);
  }
  write(addr: number, src: Uint8Array, srcOffset: number, length: number): void {
    this.check("write", addr, length);
    this.inner.write(addr, src, srcOffset, length);
  }
  fill(addr: number, length: number, value: number): void {
    this.check("fill", addr, length);
    this.inner.fill(addr, length, value);
  }
  readU8(addr: number): number {
    this.check("readU8", addr, 1);
    return this.inner.readU8(addr);
  }
  readU16(addr: number): number {
    this.check("readU16", addr, 2);
    return this.inner.readU16(addr);
  }
  readU32(addr: number): number {
    this.check("readU32", addr, 4);
    return this.inner.readU32(addr);
  }
  readU64(addr: number): number {
    this.check("readU64", addr, 8);
    return this.inner.readU64(addr);
  }
  writeU8(addr: number, value: number): void {
    this.check("writeU8", addr, 1);
    this.inner.writeU8(addr, value);
  }
  writeU16(addr: number, value: number): void {
    this.check("writeU16", addr, 2);
    this.inner.writeU16(addr, value);
  }
  writeU32(addr: number, value: number): void {
    this.check("writeU32", addr, 4);
    this.inner.writeU32(addr, value);
  }
  writeU64(addr: number, value: number): void {
    this.check("writeU64", addr, 8);
    this.inner.writeU64(addr, value);
  }
  view(addr: number, length: number): Uint8Array | null {
    this.check("view", addr, length);
    return this.inner.view(addr, length);
  }
}
