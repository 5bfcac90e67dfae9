// Loaded into the test runner and into every test file's process (`npm test` passes it with
// --import; node --test hands its flags on to the files' processes): their stdout and stderr write
// synchronously, even to a pipe.
//
// Why: a test file's process reports its results to the runner over its stdout, a pipe, and on
// Linux a write to a pipe is asynchronous. With --test-force-exit the process calls process.exit()
// once its tests are done, which drops what is still queued: the runner then reports fewer tests
// than ran, and a failed test's name and error can go missing (nodejs/node#64833, open; a run beside
// two CPU burners reported 487 of 494). Blocking writes have nothing queued when the exit comes.
// `_handle` is Node's internal stream handle (net.Socket's, also for pipes and TTYs); a stream
// without one (a file, already synchronous) is left as it is.
type WithHandle = { _handle?: { setBlocking?: (blocking: boolean) => unknown } };

for (const stream of [process.stdout, process.stderr]) (stream as unknown as WithHandle)._handle?.setBlocking?.(true);
