// Reads a Server-Sent Events response as a client would (eventsource-parser), keeping every event and
// comment it has seen so far, so a test can wait for a condition on them.
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { eventually } from '../../harness/process.js';

export interface SseReader {
  status: number;
  headers: Headers;
  events: EventSourceMessage[];
  comments: string[];
  /** The server ended the stream (or the client cancelled it). */
  ended: Promise<void>;
  isEnded(): boolean;
  /** Resolves once at least `n` events have arrived. */
  waitForEvents(n: number, what?: string): Promise<EventSourceMessage[]>;
  /** Stops reading: the client goes away. */
  cancel(): Promise<void>;
}

export function readSse(res: Response): SseReader {
  const events: EventSourceMessage[] = [];
  const comments: string[] = [];
  let done = false;
  const parser = createParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c) });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const ended = (async () => {
    try {
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch {
      // cancelled or cut: ended either way
    } finally {
      done = true;
    }
  })();
  return {
    status: res.status,
    headers: res.headers,
    events,
    comments,
    ended,
    isEnded: () => done,
    waitForEvents: (n, what = `${n} events`) => eventually(() => events.length >= n && events, { what }),
    async cancel() {
      await reader.cancel().catch(() => {});
      await ended;
    },
  };
}

/** The parsed data of each event. */
export const dataOf = <T = Record<string, unknown>>(events: EventSourceMessage[]) => events.map((e) => JSON.parse(e.data) as T);

/** The text of a stream up to its first complete event (or its end), then the client leaves: for a stream that may never end. */
export async function firstEventText(res: Response): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!/\n\n/.test(text)) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  await reader.cancel().catch(() => {});
  return text;
}
