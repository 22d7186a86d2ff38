// The chat page: one socket, the current room, a composer that sends on Enter.
import { io } from "/static/vendor/socket.io.esm.min.js";

const params = new URLSearchParams(location.search);
const options = params.get("transport") === "polling" ? { transports: ["polling"] } : {};
const socket = io(options);

const list = document.getElementById("messages");
const statusLine = document.getElementById("connection-status");
const input = document.getElementById("composer-input");
const roomList = document.getElementById("room-list");
let currentRoom = "general";
const seen = new Set();

function render(message) {
  if (message.room !== currentRoom || seen.has(message.id)) return;
  seen.add(message.id);
  const item = document.createElement("li");
  item.dataset.id = message.id;
  const who = document.createElement("strong");
  who.textContent = message.sender.username;
  const text = document.createElement("span");
  text.className = "body";
  text.textContent = message.deleted ? "(deleted)" : message.body;
  item.append(who, " ", text);
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

socket.on("connect", () => { statusLine.textContent = "Connected"; });
socket.on("disconnect", () => { statusLine.textContent = "Reconnecting…"; });
socket.on("session", (session) => {
  roomList.replaceChildren(...session.rooms.map((room) => {
    const li = document.createElement("li");
    li.textContent = `#${room.name}`;
    return li;
  }));
  socket.emit("join", { room: currentRoom }, (ack) => {
    if (ack.ok) ack.messages.forEach(render);
  });
});
socket.on("message", render);

input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey) return;
  event.preventDefault();
  const body = input.value.trim();
  if (!body) return;
  input.value = "";
  socket.emit("message", { room: currentRoom, body, client_id: crypto.randomUUID() }, (ack) => {
    if (ack.ok) render(ack.message);
    else statusLine.textContent = ack.error.message;
  });
});
