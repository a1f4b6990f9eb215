import { VirtioSndError } from "../errors.js";

/** A bump allocator over a range of guest-physical memory, for test drivers. */
export class BumpAllocator {
  private next: number;

  constructor(
    start: number,
    private readonly end: number,
  ) {
    this.next = start;
  }

  alloc = (size: number, align = 16): number => {
    const addr = Math.ceil(this.next / align) * align;
    if (addr + size > this.end)
      throw new VirtioSndError("ERR_DRIVER", `test guest out of memory allocating ${size} bytes`);
    this.next = addr + size;
    return addr;
  };
}
