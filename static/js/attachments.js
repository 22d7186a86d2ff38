// Files in the composer: attach by button, drag and drop or paste; each uploads at once, and the
// message carries the ids of those that finished. Images up to 512 KB go over the socket (`upload`),
// anything larger over HTTP (POST /api/uploads) with a progress bar. Every name is set as text.

import { el } from "./dom.js";

export const SOCKET_UPLOAD_MAX = 512 * 1024;
export const HTTP_UPLOAD_MAX = 10 * 1024 * 1024;
export const MAX_ATTACHMENTS = 10;
const SOCKET_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const SAFE_URL = /^(https?:\/\/|\/(?!\/))/i;

export function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The page's CSRF token: every page carries it in the sign-out form. */
function csrfToken() {
  return document.querySelector('input[name="csrf_token"]')?.value || "";
}

function uploadOverHttp(file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/uploads");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      const body = request.response;
      if (request.status === 201 && body?.attachment) resolve(body.attachment);
      else reject(new Error(body?.error?.message || `upload failed (${request.status})`));
    });
    request.addEventListener("error", () => reject(new Error("the upload was interrupted")));
    request.send(formWith(file));
  });
}

function formWith(file) {
  const form = new FormData();
  form.append("file", file, file.name || "pasted file");
  return form;
}

/**
 * The files waiting to go with the next message, shown above the composer.
 *
 * ``call(event, payload)`` emits with an acknowledgement (the page's own helper);
 * ``onChange()`` runs whenever the tray changes, so the page can enable sending.
 */
export class AttachmentTray {
  constructor({ composer, input, dropZone, call, onChange = () => {} }) {
    this.call = call;
    this.onChange = onChange;
    this.items = [];
    this.picker = el("input", { type: "file", multiple: true, hidden: true, id: "attach-input" });
    this.button = el("button", { type: "button", className: "attach-button secondary", "aria-label": "Attach files" }, "📎");
    this.list = el("ul", { className: "attachment-tray", "aria-label": "Files to send", hidden: true });
    this.error = el("p", { className: "form-error attach-error", role: "alert" });
    input.before(this.button, this.picker);
    composer.before(this.list, this.error);
    this.button.addEventListener("click", () => this.picker.click());
    this.picker.addEventListener("change", () => {
      this.addFiles(this.picker.files);
      this.picker.value = "";
    });
    input.addEventListener("paste", (event) => {
      const files = event.clipboardData?.files;
      if (files?.length) {
        event.preventDefault();
        this.addFiles(files);
      }
    });
    dropZone.addEventListener("dragover", (event) => {
      if (!event.dataTransfer?.types?.includes("Files")) return;
      event.preventDefault();
      dropZone.classList.add("dropping");
    });
    dropZone.addEventListener("dragleave", (event) => {
      if (event.target === dropZone) dropZone.classList.remove("dropping");
    });
    dropZone.addEventListener("drop", (event) => {
      dropZone.classList.remove("dropping");
      if (!event.dataTransfer?.files?.length) return;
      event.preventDefault();
      this.addFiles(event.dataTransfer.files);
    });
  }

  /** Ids of the uploads that finished, in the order they were added. */
  ids() {
    return this.items.filter((item) => item.attachment).map((item) => item.attachment.id);
  }

  get busy() {
    return this.items.some((item) => item.status === "uploading");
  }

  /** After a send: the tray empties (the message owns the uploads now). */
  clear() {
    this.items = [];
    this.render();
  }

  addFiles(fileList) {
    this.error.textContent = "";
    for (const file of fileList) {
      if (this.items.length >= MAX_ATTACHMENTS) {
        this.error.textContent = `At most ${MAX_ATTACHMENTS} files per message.`;
        break;
      }
      if (file.size > HTTP_UPLOAD_MAX) {
        this.error.textContent = `${file.name} is larger than ${formatSize(HTTP_UPLOAD_MAX)}.`;
        continue;
      }
      if (file.size === 0) {
        this.error.textContent = `${file.name} is empty.`;
        continue;
      }
      const item = { file, status: "uploading", progress: 0, attachment: null, message: "" };
      this.items.push(item);
      this.upload(item);
    }
    this.render();
  }

  async upload(item) {
    const { file } = item;
    try {
      if (SOCKET_TYPES.has(file.type) && file.size <= SOCKET_UPLOAD_MAX) {
        const data = await file.arrayBuffer();
        const ack = await this.call("upload", { name: file.name || "image", type: file.type, data });
        if (!ack.ok) throw new Error(ack.error?.message || "upload refused");
        item.attachment = ack.attachment;
      } else {
        item.attachment = await uploadOverHttp(file, (share) => {
          item.progress = share;
          this.renderProgress(item);
        });
      }
      item.status = "done";
    } catch (error) {
      item.status = "failed";
      item.message = error.message;
    }
    this.render();
  }

  remove(item) {
    this.items = this.items.filter((other) => other !== item);
    this.render();
  }

  renderProgress(item) {
    if (item.progressBar) item.progressBar.value = item.progress;
  }

  render() {
    this.list.replaceChildren(
      ...this.items.map((item) => {
        const name = item.file.name || "pasted file";
        item.progressBar =
          item.status === "uploading"
            ? el("progress", { max: 1, value: item.progress, "aria-label": `Uploading ${name}` })
            : null;
        return el(
          "li",
          { className: `tray-item ${item.status}` },
          el("span", { className: "file-name" }, name),
          el("span", { className: "file-size" }, ` ${formatSize(item.file.size)}`),
          item.progressBar,
          item.status === "failed" ? el("span", { className: "form-error" }, ` ${item.message}`) : null,
          el(
            "button",
            { type: "button", className: "link", "aria-label": `Remove ${name}`, on: { click: () => this.remove(item) } },
            "✕",
          ),
        );
      }),
    );
    this.list.hidden = this.items.length === 0;
    this.onChange();
  }
}

/**
 * A message's attachments: images as previews whose box is reserved from their width and height
 * (nothing jumps when they load), opening full size on click; other files as cards with name,
 * size and a download link.
 */
export function renderAttachments(attachments) {
  return el(
    "ul",
    { className: "attachments", "aria-label": "Attachments" },
    attachments
      .filter((file) => SAFE_URL.test(file.url || ""))
      .map((file) => {
        if (file.thumbnail_url && SAFE_URL.test(file.thumbnail_url)) {
          const scale = Math.min(1, 400 / Math.max(file.width || 1, file.height || 1));
          return el(
            "li",
            { className: "attachment image" },
            el(
              "a",
              { href: file.url, target: "_blank", rel: "noopener noreferrer", title: file.name },
              el("img", {
                src: file.thumbnail_url,
                alt: file.name,
                loading: "lazy",
                width: Math.max(1, Math.round((file.width || 1) * scale)),
                height: Math.max(1, Math.round((file.height || 1) * scale)),
              }),
            ),
          );
        }
        return el(
          "li",
          { className: "attachment file" },
          el("span", { className: "file-name" }, file.name),
          el("span", { className: "file-size" }, ` ${formatSize(file.size)} `),
          el("a", { href: file.url, download: file.name, rel: "noopener noreferrer" }, "Download"),
        );
      }),
  );
}
