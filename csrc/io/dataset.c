/* dataset.c: sample lists (image, optional label, origin) and PaddleSeg file-list parsing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/internal.h"
#include "dataset.h"

int ms_dataset_new(ms_dataset **out) {
  if (!out) return ms_fail(MS_ERR_INVALID, "dataset_new: out is NULL");
  ms_dataset *ds = calloc(1, sizeof *ds);
  if (!ds) return ms_fail(MS_ERR_OOM, "dataset_new: out of memory");
  *out = ds;
  return MS_OK;
}

void ms_dataset_free(ms_dataset *ds) {
  if (!ds) return;
  for (int64_t i = 0; i < ds->n; i++) {
    free(ds->samples[i].image);
    free(ds->samples[i].label);
    free(ds->samples[i].origin);
  }
  free(ds->samples);
  free(ds);
}

int ms_dataset_add(ms_dataset *ds, const char *image, const char *label, const char *origin) {
  if (!ds || !image)
    return ms_fail(MS_ERR_INVALID, "dataset_add: dataset and image path are required");
  if (ds->n == ds->cap) {
    int64_t cap = ds->cap ? ds->cap * 2 : 256;
    ms_sample *s = realloc(ds->samples, sizeof *s * (size_t)cap);
    if (!s) return ms_fail(MS_ERR_OOM, "dataset_add: out of memory");
    ds->samples = s;
    ds->cap = cap;
  }
  ms_sample *s = &ds->samples[ds->n];
  s->image = strdup(image);
  s->label = label ? strdup(label) : NULL;
  s->origin = strdup(origin ? origin : image);
  if (!s->image || (label && !s->label) || !s->origin) {
    free(s->image);
    free(s->label);
    free(s->origin);
    return ms_fail(MS_ERR_OOM, "dataset_add: out of memory");
  }
  if (label) ds->with_labels++;
  ds->n++;
  return MS_OK;
}

int64_t ms_dataset_size(const ms_dataset *ds) { return ds ? ds->n : 0; }
const char *ms_dataset_image(const ms_dataset *ds, int64_t i) {
  return ds && i >= 0 && i < ds->n ? ds->samples[i].image : NULL;
}
const char *ms_dataset_label(const ms_dataset *ds, int64_t i) {
  return ds && i >= 0 && i < ds->n ? ds->samples[i].label : NULL;
}
const char *ms_dataset_origin(const ms_dataset *ds, int64_t i) {
  return ds && i >= 0 && i < ds->n ? ds->samples[i].origin : NULL;
}

static char *join_path(const char *root, const char *rel) {
  size_t a = root ? strlen(root) : 0, b = strlen(rel);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  if (a && rel[0] != '/') {
    memcpy(p, root, a);
    if (root[a - 1] != '/') p[a++] = '/';
  } else {
    a = 0;
  }
  memcpy(p + a, rel, b + 1);
  return p;
}

/* Splits line into fields at sep (or runs of blanks when sep is NULL/empty); returns count. */
static int split_fields(char *line, const char *sep, char **fields, int cap) {
  int n = 0;
  if (!sep || !*sep) {
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
      if (n == cap) return cap + 1;
      fields[n++] = tok;
    }
    return n;
  }
  size_t sl = strlen(sep);
  char *p = line;
  for (;;) {
    if (n == cap) return cap + 1;
    fields[n++] = p;
    char *q = strstr(p, sep);
    if (!q) break;
    *q = 0;
    p = q + sl;
  }
  return n;
}

int ms_dataset_add_list(ms_dataset *ds, const char *root, const char *list_path, const char *sep,
                        int require_label) {
  if (!ds || !list_path) return ms_fail(MS_ERR_INVALID, "dataset_add_list: NULL argument");
  if (root) {
    struct stat st;
    if (stat(root, &st) != 0)
      return ms_fail(MS_ERR_IO, "dataset root %s: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return ms_fail(MS_ERR_IO, "dataset root %s is not a directory", root);
  }
  FILE *f = fopen(list_path, "r");
  if (!f) return ms_fail(MS_ERR_IO, "file list %s: cannot open: %s", list_path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int64_t lineno = 0, added = 0;
  int rc = MS_OK;
  while (!rc && (len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    char *start = line;
    while (*start == ' ' || *start == '\t')
      start++;
    if (!*start) continue; /* blank lines are allowed */
    char *end = start + strlen(start);
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
      *--end = 0;
    char shown[160]; /* the line as written (splitting cuts it up) */
    snprintf(shown, sizeof shown, "%s", start);
    char *fields[3] = {NULL, NULL, NULL};
    int nf = split_fields(start, sep, fields, 2);
    if (nf < 1 || nf > 2 || (nf == 2 && !*fields[1]) || !*fields[0]) {
      rc = ms_fail(MS_ERR_IO,
                   "file list %s line %lld: expected 'image%slabel', got '%s' (%s fields)",
                   list_path, (long long)lineno, sep && *sep ? sep : " ", shown,
                   nf > 2    ? "more than 2"
                   : nf == 2 ? "2 (one empty)"
                             : "no");
      break;
    }
    if (nf == 1 && require_label) {
      rc = ms_fail(MS_ERR_IO, "file list %s line %lld: '%s' has no label path", list_path,
                   (long long)lineno, fields[0]);
      break;
    }
    char origin[96];
    const char *base = strrchr(list_path, '/');
    snprintf(origin, sizeof origin, "%.48s:%lld", base ? base + 1 : list_path, (long long)lineno);
    char *img = join_path(root, fields[0]);
    char *lab = nf == 2 ? join_path(root, fields[1]) : NULL;
    if (!img || (nf == 2 && !lab))
      rc = ms_fail(MS_ERR_OOM, "file list %s: out of memory", list_path);
    else
      rc = ms_dataset_add(ds, img, lab, origin);
    free(img);
    free(lab);
    added++;
  }
  free(line);
  if (!rc && ferror(f)) rc = ms_fail(MS_ERR_IO, "file list %s: read error", list_path);
  fclose(f);
  if (!rc && added == 0) rc = ms_fail(MS_ERR_IO, "file list %s has no samples", list_path);
  return rc;
}
