// Browser notifications for direct messages and mentions that arrive while the tab is hidden.
// Permission is asked for only after a click on "Enable notifications"; whether they are on is
// this user's own setting, kept in this browser, and the same button turns them off again.

const key = (userId) => `switchboard:notifications:${userId}`;

export class Notifier {
  /** `button` toggles the setting; `status` (role=status) says when the browser refuses. */
  constructor(userId, button, status) {
    this.key = key(userId);
    this.button = button;
    this.status = status;
    this.button.addEventListener("click", () => this.toggle());
    this.render();
  }

  get supported() {
    return typeof window.Notification === "function";
  }

  get chosen() {
    try {
      return localStorage.getItem(this.key) === "on";
    } catch {
      return false;
    }
  }

  set chosen(on) {
    try {
      localStorage.setItem(this.key, on ? "on" : "off");
    } catch {
      // Without storage the choice lasts for this page only.
      this.fallback = on;
    }
  }

  get enabled() {
    return this.supported && Notification.permission === "granted" && (this.chosen || this.fallback === true);
  }

  async toggle() {
    if (this.enabled) {
      this.chosen = false;
      this.fallback = false;
      this.status.textContent = "Notifications are off.";
    } else {
      let permission = Notification.permission;
      if (permission === "default") permission = await Notification.requestPermission();
      if (permission === "granted") {
        this.chosen = true;
        this.status.textContent = "Notifications are on while this tab is hidden.";
      } else {
        this.status.textContent = "This browser blocks notifications from this site; allow them in its settings.";
      }
    }
    this.render();
  }

  render() {
    this.button.hidden = !this.supported;
    this.button.textContent = this.enabled ? "Turn off notifications" : "Enable notifications";
  }

  /** Show one notification if they are on and the tab is hidden; a click opens the conversation. */
  notify(title, body, tag, open) {
    if (!this.enabled || document.visibilityState === "visible") return;
    try {
      const notification = new Notification(title, { body, tag });
      notification.onclick = () => {
        window.focus();
        open();
        notification.close();
      };
    } catch {
      // Some browsers only allow notifications from a service worker: the tab title still counts.
    }
  }
}
