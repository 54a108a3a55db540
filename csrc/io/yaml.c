/* yaml.c: one YAML document (libyaml's event parser) flattened into a record text that
 * lua/moonseg/config/yaml.lua turns into tables; anchors, aliases and tags are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/internal.h"
#include "moonseg.h"

typedef struct {
  char *buf;
  size_t len, cap;
} ms_yaml_out;

static int out_put(ms_yaml_out *o, const char *s, size_t n) {
  if (o->len + n + 1 > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (o->len + n + 1 > cap)
      cap *= 2;
    char *b = realloc(o->buf, cap);
    if (!b) return ms_fail(MS_ERR_OOM, "yaml: out of memory");
    o->buf = b;
    o->cap = cap;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
  o->buf[o->len] = 0;
  return MS_OK;
}

static int out_head(ms_yaml_out *o, char kind, size_t line, size_t extra) {
  char h[64];
  int n = snprintf(h, sizeof h, "%c%zu %zu\n", kind, line, extra);
  return out_put(o, h, (size_t)n);
}

/* Anchors, aliases and tags would need semantics moonseg's config reader does not have. */
static int refuse(const char *name, const yaml_event_t *ev, const char *what, const char *value) {
  return ms_fail(MS_ERR_UNSUPPORTED,
                 "%s:%zu: YAML %s%s%s is not supported in configs (write the value out)", name,
                 ev->start_mark.line + 1, what, value ? " " : "", value ? value : "");
}

static int check_props(const char *name, const yaml_event_t *ev, const yaml_char_t *anchor,
                       const yaml_char_t *tag, int implicit) {
  if (anchor) return refuse(name, ev, "anchor &", (const char *)anchor);
  if (tag && !implicit) return refuse(name, ev, "tag", (const char *)tag);
  return MS_OK;
}

/* Records, one per event: "M<line> 0\n" mapping start, "Q<line> 0\n" sequence start,
 * "E<line> 0\n" end of either, "S<line> <n>\n<n bytes>\n" a scalar whose first byte says its
 * style (p plain, q quoted or block) and the rest is its value. Lines are 1-based. */
int ms_yaml_events(const char *text, int64_t len, const char *name, char **out, int64_t *out_len) {
  if (!text || len < 0 || !out || !out_len)
    return ms_fail(MS_ERR_INVALID, "ms_yaml_events: NULL argument");
  if (!name) name = "<yaml>";
  *out = NULL;
  *out_len = 0;
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) return ms_fail(MS_ERR_OOM, "yaml: cannot initialise the parser");
  yaml_parser_set_input_string(&p, (const unsigned char *)text, (size_t)len);
  ms_yaml_out o = {0};
  int st = MS_OK, docs = 0, done = 0;
  while (st == MS_OK && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      st = ms_fail(MS_ERR_INVALID, "%s:%zu:%zu: YAML syntax error: %s%s%s", name,
                   p.problem_mark.line + 1, p.problem_mark.column + 1,
                   p.problem ? p.problem : "unknown", p.context ? " " : "",
                   p.context ? p.context : "");
      break;
    }
    size_t line = ev.start_mark.line + 1;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT: done = 1; break;
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1)
        st = ms_fail(MS_ERR_UNSUPPORTED, "%s:%zu: a config holds one YAML document, found a second",
                     name, line);
      break;
    case YAML_ALIAS_EVENT:
      st = refuse(name, &ev, "alias *", (const char *)ev.data.alias.anchor);
      break;
    case YAML_MAPPING_START_EVENT:
      st = check_props(name, &ev, ev.data.mapping_start.anchor, ev.data.mapping_start.tag,
                       ev.data.mapping_start.implicit);
      if (st == MS_OK) st = out_head(&o, 'M', line, 0);
      break;
    case YAML_SEQUENCE_START_EVENT:
      st = check_props(name, &ev, ev.data.sequence_start.anchor, ev.data.sequence_start.tag,
                       ev.data.sequence_start.implicit);
      if (st == MS_OK) st = out_head(&o, 'Q', line, 0);
      break;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT: st = out_head(&o, 'E', line, 0); break;
    case YAML_SCALAR_EVENT: {
      const yaml_char_t *tag = ev.data.scalar.tag;
      int implicit = ev.data.scalar.plain_implicit || ev.data.scalar.quoted_implicit;
      st = check_props(name, &ev, ev.data.scalar.anchor, tag, implicit);
      if (st != MS_OK) break;
      size_t n = ev.data.scalar.length;
      char style = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? 'p' : 'q';
      st = out_head(&o, 'S', line, n + 1);
      if (st == MS_OK) st = out_put(&o, &style, 1);
      if (st == MS_OK) st = out_put(&o, (const char *)ev.data.scalar.value, n);
      if (st == MS_OK) st = out_put(&o, "\n", 1);
      break;
    }
    default: break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  if (st != MS_OK) {
    free(o.buf);
    return st;
  }
  if (!o.buf && (st = out_put(&o, "", 0)) != MS_OK) return st;
  *out = o.buf;
  *out_len = (int64_t)o.len;
  return MS_OK;
}

void ms_yaml_free(char *text) { free(text); }
