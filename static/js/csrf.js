// The CSRF token every cookie-authenticated write sends (from <meta name="csrf-token">).
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

export function jsonHeaders(extra = {}) {
  return { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), ...extra };
}
