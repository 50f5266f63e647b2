// Live streams (Server-Sent Events) for the pages that show something
// changing: GET /executions/{id}/events and GET /functions/{function}/events.
// The session cookie authenticates EventSource (a GET: no CSRF token).
// A stream that ends is reopened by the browser after the server's
// `retry:`; these helpers close it when the page is left or it is done.

import { onLeave } from './lib.js';

/**
 * Opens the stream at `path` and calls `handlers[event](data)` with each
 * event's JSON data. Returns a function that closes it.
 */
export function follow(path, handlers) {
  const source = new EventSource(path);
  let closed = false;
  const close = () => {
    closed = true;
    source.close();
  };
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      if (!closed) handler(JSON.parse(event.data));
    });
  }
  onLeave(close);
  return close;
}

/**
 * Follows an execution: `onChange(record)` with each status change (the
 * last record merged with the change: status events leave out the input,
 * output and logs), then with the final record, after which it stops.
 */
export function followExecution(execution, onChange) {
  let last = execution;
  const close = follow(`/executions/${encodeURIComponent(execution.id)}/events`, {
    status: (change) => {
      last = { ...last, ...change };
      // The final record follows a final status at once.
      if (change.status === 'QUEUED' || change.status === 'RUNNING') onChange(last);
    },
    execution: (record) => {
      close();
      onChange(record);
    },
  });
  return close;
}

/**
 * Calls `onChange(kind, data)` for each event of a function's stream:
 * `version` (a build moved on), `execution` (a run appeared or changed)
 * and `resync` (events may have been missed: re-read what is shown). The
 * first event is the newest version's current state.
 */
export function followFunction(functionId, onChange) {
  const on = (kind) => (data) => onChange(kind, data);
  return follow(`/functions/${encodeURIComponent(functionId)}/events`, {
    version: on('version'),
    execution: on('execution'),
    resync: on('resync'),
  });
}
