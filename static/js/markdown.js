// A reply's Markdown rendered in the page while it streams, by the same rules as the server
// (app/chat/render.py): markdown-it in CommonMark mode with tables and strikethrough, raw HTML
// off (a model's <script> stays text), then DOMPurify with the server's allow-list of tags and
// of attributes per tag, links limited to http, https, mailto and relative ones, each link
// given rel="noopener nofollow". When the reply ends, the server's own HTML replaces it: the same
// structure plus Pygments' colours in code blocks, so nothing moves.
//
// markdown-it is a classic script (static/vendor/markdown-it, loaded before the chat's modules);
// without it, renderMarkdown returns null and the caller shows plain text.
import DOMPurify from "../vendor/dompurify/purify.es.js";

const md = globalThis.markdownit
  ? globalThis.markdownit("commonmark", { html: false, linkify: false }).enable(["table", "strikethrough"])
  : null;

// app/chat/render.py ALLOWED_TAGS and ALLOWED_ATTRIBUTES.
const TAGS = [
  "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "span", "blockquote",
  "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
  "table", "thead", "tbody", "tr", "th", "td", "div",
];
const ATTRIBUTES = {
  a: ["href", "title"], span: ["class"], code: ["class"], div: ["class"], pre: ["class"],
  th: ["align"], td: ["align"], ol: ["start"],
};
// DOMPurify's own default pattern with the schemes cut down to the server's: http, https and
// mailto, or no scheme at all (a relative link).
const URLS = /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i;

const purify = DOMPurify(window);
purify.addHook("uponSanitizeAttribute", (node, data) => {
  const allowed = ATTRIBUTES[node.nodeName.toLowerCase()];
  if (!allowed || !allowed.includes(data.attrName)) data.keepAttr = false;
});
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") node.setAttribute("rel", "noopener nofollow");
});

const OPTIONS = {
  ALLOWED_TAGS: TAGS,
  ALLOWED_ATTR: [...new Set(Object.values(ATTRIBUTES).flat())],
  ALLOWED_URI_REGEXP: URLS,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
};

/** Sanitised HTML for ``text``, or null when markdown-it is not loaded. */
export function renderMarkdown(text) {
  if (!md) return null;
  return purify.sanitize(md.render(text), OPTIONS);
}
