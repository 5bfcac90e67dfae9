// Handing the C library's free memory back to the system once a burst is over. Every message
// passes through memory that malloc hands out (Buffers' backing stores, SQLite's page cache, the
// sockets' buffers); glibc's free() returns only the top of its main heap, so pages freed in its
// middle stay resident: after a million-message drain the broker kept 65 MiB of malloc's heap
// against 7 idle, the JavaScript heap being back where it was (docs/benchmarks.md).
// malloc_trim(0) gives every whole free page back (madvise), and SQLite's shrink_memory drops the
// page cache it keeps for the connection. Node has no binding for malloc_trim, so it is called
// through koffi (FFI); where the C library has none (musl, macOS) nothing is trimmed and the
// broker says so once.
import koffi from 'koffi';

/** Gives free memory back to the system; true when the C library released some. */
export type TrimNativeHeap = () => boolean;

/** glibc's malloc_trim, or why it is not there. */
export function nativeHeapTrimmer(): { trim: TrimNativeHeap } | { unavailable: string } {
  try {
    const libc = koffi.load('libc.so.6');
    const mallocTrim = libc.func('int malloc_trim(size_t pad)') as (pad: number) => number;
    return { trim: () => mallocTrim(0) === 1 };
  } catch (err) {
    return { unavailable: (err as Error).message };
  }
}
