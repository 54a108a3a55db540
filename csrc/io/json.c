/* json.c: a small strict recursive-descent JSON reader with depth and size limits. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *s;
  int64_t pos, len;
  char *err;
  int errlen;
  int failed;
} parser;

#define MAX_DEPTH 64

static void fail(parser *p, const char *what) {
  if (!p->failed) snprintf(p->err, p->errlen, "%s at byte %lld", what, (long long)p->pos);
  p->failed = 1;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static ms_json *node(ms_json_type t) {
  ms_json *j = calloc(1, sizeof *j);
  if (j) j->type = t;
  return j;
}

void ms_json_free(ms_json *j) {
  if (!j) return;
  for (int i = 0; i < j->n; i++) {
    ms_json_free(j->items[i]);
    if (j->keys) free(j->keys[i]);
  }
  free(j->items);
  free(j->keys);
  free(j->str);
  free(j);
}

static int hex4(parser *p, unsigned *out) {
  if (p->pos + 4 > p->len) return 0;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos++];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (unsigned)(c - 'A' + 10);
    else
      return 0;
  }
  *out = v;
  return 1;
}

static int put_utf8(char *b, unsigned cp) {
  if (cp < 0x80) {
    b[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    b[0] = (char)(0xC0 | (cp >> 6));
    b[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    b[0] = (char)(0xE0 | (cp >> 12));
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  b[0] = (char)(0xF0 | (cp >> 18));
  b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  b[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Reads a string literal (p at the opening quote) into a new buffer. */
static char *parse_string(parser *p) {
  p->pos++; /* opening quote */
  /* Escapes never grow the text: \uXXXX (6 bytes) is at most 4 UTF-8 bytes. */
  int64_t start = p->pos;
  int64_t end = start;
  while (end < p->len && p->s[end] != '"')
    end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->len) {
    fail(p, "unterminated string");
    return NULL;
  }
  char *out = malloc((size_t)(end - start) + 1);
  if (!out) {
    fail(p, "out of memory");
    return NULL;
  }
  int64_t o = 0;
  while (p->pos < p->len) {
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') {
      p->pos++;
      out[o] = 0;
      return out;
    }
    if (c < 0x20) {
      fail(p, "control character in string");
      break;
    }
    if (c != '\\') {
      out[o++] = (char)c;
      p->pos++;
      continue;
    }
    p->pos++;
    if (p->pos >= p->len) {
      fail(p, "bad escape");
      break;
    }
    char e = p->s[p->pos++];
    switch (e) {
    case '"': out[o++] = '"'; break;
    case '\\': out[o++] = '\\'; break;
    case '/': out[o++] = '/'; break;
    case 'b': out[o++] = '\b'; break;
    case 'f': out[o++] = '\f'; break;
    case 'n': out[o++] = '\n'; break;
    case 'r': out[o++] = '\r'; break;
    case 't': out[o++] = '\t'; break;
    case 'u': {
      unsigned cp;
      if (!hex4(p, &cp)) {
        fail(p, "bad \\u escape");
        goto bad;
      }
      if (cp >= 0xD800 && cp < 0xDC00) { /* surrogate pair */
        unsigned lo;
        if (p->pos + 2 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
          fail(p, "unpaired surrogate");
          goto bad;
        }
        p->pos += 2;
        if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
          fail(p, "bad surrogate pair");
          goto bad;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      o += put_utf8(out + o, cp);
      break;
    }
    default: fail(p, "bad escape"); goto bad;
    }
  }
bad:
  if (!p->failed) fail(p, "unterminated string");
  free(out);
  return NULL;
}

static ms_json *parse_value(parser *p, int depth);

static int push(parser *p, ms_json *j, char *key, ms_json *item) {
  if ((j->n & (j->n - 1)) == 0) { /* grow at powers of two */
    int cap = j->n ? j->n * 2 : 4;
    ms_json **items = realloc(j->items, sizeof *items * (size_t)cap);
    if (!items) {
      fail(p, "out of memory");
      return 0;
    }
    j->items = items;
    if (j->type == MS_JSON_OBJ) {
      char **keys = realloc(j->keys, sizeof *keys * (size_t)cap);
      if (!keys) {
        fail(p, "out of memory");
        return 0;
      }
      j->keys = keys;
    }
  }
  j->items[j->n] = item;
  if (j->type == MS_JSON_OBJ) j->keys[j->n] = key;
  j->n++;
  return 1;
}

static ms_json *parse_container(parser *p, int depth, int is_obj) {
  ms_json *j = node(is_obj ? MS_JSON_OBJ : MS_JSON_ARR);
  if (!j) {
    fail(p, "out of memory");
    return NULL;
  }
  p->pos++;
  skip_ws(p);
  char close = is_obj ? '}' : ']';
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    return j;
  }
  for (;;) {
    char *key = NULL;
    skip_ws(p);
    if (is_obj) {
      if (p->pos >= p->len || p->s[p->pos] != '"') {
        fail(p, "expected a string key");
        break;
      }
      if (!(key = parse_string(p))) break;
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') {
        free(key);
        fail(p, "expected ':'");
        break;
      }
      p->pos++;
    }
    ms_json *item = parse_value(p, depth + 1);
    if (!item || !push(p, j, key, item)) {
      free(key);
      ms_json_free(item);
      break;
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == close) {
      p->pos++;
      return j;
    }
    fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    break;
  }
  ms_json_free(j);
  return NULL;
}

static ms_json *parse_number(parser *p) {
  int64_t start = p->pos;
  int is_int = 1;
  if (p->s[p->pos] == '-') p->pos++;
  if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
    fail(p, "bad number");
    return NULL;
  }
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c >= '0' && c <= '9') {
      p->pos++;
      continue;
    }
    if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
      is_int = 0;
      p->pos++;
      continue;
    }
    break;
  }
  char buf[64];
  int64_t n = p->pos - start;
  if (n >= (int64_t)sizeof buf) {
    fail(p, "number too long");
    return NULL;
  }
  memcpy(buf, p->s + start, (size_t)n);
  buf[n] = 0;
  char *end;
  ms_json *j = node(MS_JSON_NUM);
  if (!j) {
    fail(p, "out of memory");
    return NULL;
  }
  j->num = strtod(buf, &end);
  if (*end) {
    ms_json_free(j);
    p->pos = start;
    fail(p, "bad number");
    return NULL;
  }
  if (is_int) {
    long long v = strtoll(buf, &end, 10);
    j->is_int = !*end && fabs(j->num) < 9.2e18;
    j->ival = v;
  }
  return j;
}

static int match(parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->pos + (int64_t)n > p->len || memcmp(p->s + p->pos, word, n)) return 0;
  p->pos += (int64_t)n;
  return 1;
}

static ms_json *parse_value(parser *p, int depth) {
  if (depth > MAX_DEPTH) {
    fail(p, "nesting too deep");
    return NULL;
  }
  skip_ws(p);
  if (p->pos >= p->len) {
    fail(p, "unexpected end");
    return NULL;
  }
  char c = p->s[p->pos];
  if (c == '{') return parse_container(p, depth, 1);
  if (c == '[') return parse_container(p, depth, 0);
  if (c == '"') {
    char *s = parse_string(p);
    if (!s) return NULL;
    ms_json *j = node(MS_JSON_STR);
    if (!j) {
      free(s);
      fail(p, "out of memory");
      return NULL;
    }
    j->str = s;
    return j;
  }
  if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p);
  ms_json *j = NULL;
  if (match(p, "true")) {
    j = node(MS_JSON_BOOL);
    if (j) j->num = 1;
  } else if (match(p, "false"))
    j = node(MS_JSON_BOOL);
  else if (match(p, "null"))
    j = node(MS_JSON_NULL);
  else {
    fail(p, "unexpected character");
    return NULL;
  }
  if (!j) fail(p, "out of memory");
  return j;
}

ms_json *ms_json_parse(const char *text, int64_t len, char *err, int errlen) {
  parser p = {text, 0, len, err, errlen, 0};
  ms_json *j = parse_value(&p, 0);
  if (j) {
    skip_ws(&p);
    if (p.pos != len) {
      fail(&p, "trailing characters");
      ms_json_free(j);
      return NULL;
    }
  }
  return j;
}

const ms_json *ms_json_get(const ms_json *obj, const char *key) {
  if (!obj || obj->type != MS_JSON_OBJ) return NULL;
  for (int i = 0; i < obj->n; i++)
    if (!strcmp(obj->keys[i], key)) return obj->items[i];
  return NULL;
}
