// Files tab: drag and drop, one XHR upload per file with a real progress bar, then the file list
// is refreshed from the server's own HTML. Without JavaScript the form posts all files at once.
import { csrfToken } from "./csrf.js";

const form = document.getElementById("upload-form");
const input = document.getElementById("file-input");
const zone = document.getElementById("dropzone");
const queue = document.getElementById("upload-queue");
const button = document.getElementById("upload-button");

const limitBytes = Number(form.dataset.limitMb) * 1024 * 1024;

function queueItem(file) {
  const li = document.createElement("li");
  li.className = "upload-item";
  const name = document.createElement("span");
  name.className = "upload-name";
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", `Upload progress of ${file.name}`);
  const status = document.createElement("span");
  status.className = "upload-status";
  status.textContent = "Waiting…";
  li.append(name, bar, status);
  queue.append(li);
  return {
    progress(pct) {
      bar.value = pct;
      status.textContent = `${pct}%`;
    },
    finish(ok, text) {
      bar.value = ok ? 100 : bar.value;
      li.classList.add(ok ? "is-done" : "is-error");
      status.textContent = text;
    },
  };
}

function errorText(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    if (body && body.error) return body.error.message;
  } catch {
    /* not JSON: fall through */
  }
  return `Upload failed (HTTP ${xhr.status}).`;
}

function send(file, item) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) item.progress(Math.round((ev.loaded / ev.total) * 100));
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) {
        item.finish(true, "Uploaded.");
      } else if (xhr.status === 200) {
        const body = JSON.parse(xhr.responseText);
        item.finish(true, `Already here, as ${body.name}.`);
      } else {
        item.finish(false, errorText(xhr));
      }
      resolve();
    });
    xhr.addEventListener("error", () => {
      item.finish(false, "Network error: the upload did not reach the server.");
      resolve();
    });
    const data = new FormData();
    data.append("file", file);
    xhr.send(data);
  });
}

async function refreshList() {
  const resp = await fetch(window.location.pathname, { headers: { Accept: "text/html" } });
  if (!resp.ok) return;
  const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
  const fresh = doc.getElementById("file-list");
  if (fresh) document.getElementById("file-list").replaceWith(fresh);
}

// While a file's text is being extracted (a PDF, in the server's sandbox) or its copy to
// OpenAI is being made (both jobs on the server's queue), refresh the list now and then until
// every file has its outcome; give up after ten minutes.
const POLL_MS = 2000;
let pollUntil = 0;
function watchExtraction() {
  if (!document.querySelector("#file-list .text-pending, #file-list .sync-pending")) return;
  if (!pollUntil) pollUntil = Date.now() + 10 * 60 * 1000;
  if (Date.now() > pollUntil) return;
  setTimeout(async () => {
    await refreshList();
    watchExtraction();
  }, POLL_MS);
}

async function uploadAll(files) {
  if (!files.length) return;
  button.disabled = true;
  queue.replaceChildren();
  const items = files.map((file) => [file, queueItem(file)]);
  for (const [file, item] of items) {
    if (file.size > limitBytes) {
      item.finish(false, `${file.name} is larger than the ${form.dataset.limitMb} MB limit.`);
    } else if (file.size === 0) {
      item.finish(false, `${file.name} is empty.`);
    } else {
      await send(file, item);
    }
  }
  input.value = "";
  button.disabled = false;
  await refreshList();
  pollUntil = 0;
  watchExtraction();
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  uploadAll([...input.files]);
});

for (const type of ["dragenter", "dragover"]) {
  zone.addEventListener(type, (ev) => {
    ev.preventDefault();
    zone.classList.add("is-over");
  });
}
for (const type of ["dragleave", "drop"]) {
  zone.addEventListener(type, () => zone.classList.remove("is-over"));
}
zone.addEventListener("drop", (ev) => {
  ev.preventDefault();
  uploadAll([...ev.dataTransfer.files]);
});

watchExtraction();
