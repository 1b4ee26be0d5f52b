// Minimal server-sent-events reader over a fetch() body (EventSource cannot POST).
// Yields {event, data, id} for each frame (id: the frame's "id:" or null); comment lines
// (": keep-alive") are skipped.
export async function* readEvents(response, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        let id = null;
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (name === "event") event = value;
          else if (name === "id") id = value;
          else if (name === "data") data.push(value);
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")), id };
      }
      if (signal && signal.aborted) break;
    }
  } finally {
    reader.releaseLock();
  }
}
