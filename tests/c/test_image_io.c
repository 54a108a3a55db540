/* test_image_io.c: image codecs from C: round trips, exhaustive truncations and byte flips of
 * every file (no crash, no leak under ASan, IO status naming the file), atomic writes. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

#include "check.h"

static ms_context *ctx;
static char dir[256];

static ms_tensor *make_u8(int64_t h, int64_t w, int64_t c, int seed) {
  int64_t shape[3] = {h, w, c};
  int64_t n = h * w * (c ? c : 1);
  uint8_t *buf = malloc((size_t)n);
  for (int64_t i = 0; i < n; i++)
    buf[i] = (uint8_t)((i * 7 + seed * 13 + (i / w) * 3) % 251);
  ms_tensor *t = NULL;
  CHECK(ms_from_host(ctx, buf, n, shape, c ? 3 : 2, MS_U8, MS_CPU, 0, &t) == MS_OK);
  free(buf);
  return t;
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)len + 1);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

static int count_entries(const char *path) {
  DIR *d = opendir(path);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  if (d) closedir(d);
  return n;
}

/* Every prefix and every single-byte corruption of the file decodes or fails cleanly. */
static void torture(const char *path) {
  size_t n = 0;
  uint8_t *orig = slurp(path, &n);
  CHECK(orig != NULL && n > 8);
  if (!orig) return;
  uint8_t *b = malloc(n);
  int ok = 0, bad = 0, wrong_status = 0, unnamed = 0;
  for (size_t len = 0; len <= n; len++) {
    for (int mode = 0; mode < 3; mode++) {
      ms_tensor *t = NULL;
      int st = ms_image_decode(ctx, orig, (int64_t)len, (ms_image_mode)mode, "torture", &t);
      if (st == MS_OK) {
        ok++;
        ms_tensor_free(t);
      } else {
        bad++;
        if (st != MS_ERR_IO && st != MS_ERR_UNSUPPORTED) wrong_status++;
        if (!strstr(ms_last_error(), "torture")) unnamed++;
      }
    }
  }
  for (size_t i = 0; i < n; i++) {
    memcpy(b, orig, n);
    b[i] ^= 0x55;
    for (int mode = 0; mode < 3; mode++) {
      ms_tensor *t = NULL;
      int st = ms_image_decode(ctx, b, (int64_t)n, (ms_image_mode)mode, "torture", &t);
      if (st == MS_OK) {
        ok++;
        ms_tensor_free(t);
      } else {
        bad++;
        if (st != MS_ERR_IO && st != MS_ERR_UNSUPPORTED) wrong_status++;
        if (!strstr(ms_last_error(), "torture")) unnamed++;
      }
    }
  }
  CHECK(bad > 0 && ok > 0);
  CHECK(wrong_status == 0);
  CHECK(unnamed == 0);
  free(b);
  free(orig);
}

static void test_round_trips_and_torture(void) {
  char path[512];
  /* RGB PNG */
  ms_tensor *rgb = make_u8(9, 11, 3, 1), *back = NULL;
  snprintf(path, sizeof path, "%s/rgb.png", dir);
  CHECK(ms_png_write(ctx, path, rgb, NULL, 0) == MS_OK);
  CHECK(ms_image_read(ctx, path, MS_IMAGE_RGB, &back) == MS_OK);
  CHECK(back && back->ndim == 3 && back->shape[2] == 3 &&
        memcmp(ms_data(back), ms_data(rgb), 9 * 11 * 3) == 0);
  ms_tensor_free(back);
  torture(path);
  /* palette PNG */
  uint8_t pal[16 * 3];
  for (int i = 0; i < 48; i++)
    pal[i] = (uint8_t)(255 - i * 5);
  int64_t shape[2] = {6, 5};
  uint8_t idx[30];
  for (int i = 0; i < 30; i++)
    idx[i] = (uint8_t)(i % 16);
  ms_tensor *it = NULL;
  CHECK(ms_from_host(ctx, idx, 30, shape, 2, MS_U8, MS_CPU, 0, &it) == MS_OK);
  snprintf(path, sizeof path, "%s/pal.png", dir);
  CHECK(ms_png_write(ctx, path, it, pal, 16) == MS_OK);
  back = NULL;
  CHECK(ms_image_read(ctx, path, MS_IMAGE_LABEL, &back) == MS_OK);
  CHECK(back && back->ndim == 2 && memcmp(ms_data(back), idx, 30) == 0);
  ms_tensor_free(back);
  torture(path);
  /* 16-bit gray PNG */
  int32_t v16[30];
  for (int i = 0; i < 30; i++)
    v16[i] = i * 2203;
  ms_tensor *g16 = NULL;
  CHECK(ms_from_host(ctx, v16, sizeof v16, shape, 2, MS_I32, MS_CPU, 0, &g16) == MS_OK);
  snprintf(path, sizeof path, "%s/g16.png", dir);
  CHECK(ms_png_write(ctx, path, g16, NULL, 0) == MS_OK);
  back = NULL;
  CHECK(ms_image_read(ctx, path, MS_IMAGE_LABEL, &back) == MS_OK);
  CHECK(back && back->dtype == MS_I32 && memcmp(ms_data(back), v16, sizeof v16) == 0);
  ms_tensor_free(back);
  torture(path);
  /* JPEG, RGB and gray */
  snprintf(path, sizeof path, "%s/rgb.jpg", dir);
  CHECK(ms_jpeg_write(ctx, path, rgb, 90, 420) == MS_OK);
  torture(path);
  snprintf(path, sizeof path, "%s/gray.jpg", dir);
  CHECK(ms_jpeg_write(ctx, path, it, 90, 444) == MS_OK);
  back = NULL;
  CHECK(ms_image_read(ctx, path, MS_IMAGE_RGB, &back) == MS_OK);
  CHECK(back && back->shape[2] == 3);
  ms_tensor_free(back);
  torture(path);
  ms_tensor_free(rgb);
  ms_tensor_free(it);
  ms_tensor_free(g16);
}

static void test_errors(void) {
  char path[512];
  ms_tensor *t = NULL, *img = make_u8(2, 2, 0, 3);
  snprintf(path, sizeof path, "%s/missing.png", dir);
  CHECK(ms_image_read(ctx, path, MS_IMAGE_RGB, &t) == MS_ERR_IO);
  CHECK(strstr(ms_last_error(), path) != NULL);
  CHECK(ms_image_read(ctx, path, (ms_image_mode)7, &t) == MS_ERR_INVALID);
  CHECK(ms_image_decode(ctx, NULL, 5, MS_IMAGE_RGB, NULL, &t) == MS_ERR_INVALID);
  CHECK(ms_image_decode(ctx, "", 0, MS_IMAGE_RGB, NULL, &t) == MS_ERR_IO);
  CHECK(strstr(ms_last_error(), "<memory>") != NULL);
  int before = count_entries(dir);
  snprintf(path, sizeof path, "%s/bad.png", dir);
  uint8_t pal[3] = {1, 2, 3};
  CHECK(ms_png_write(ctx, path, img, pal, 1) == MS_ERR_INVALID); /* index >= 1 */
  CHECK(ms_png_write(ctx, path, img, NULL, 3) == MS_ERR_INVALID);
  CHECK(ms_jpeg_write(ctx, path, img, 101, 420) == MS_ERR_INVALID);
  CHECK(ms_jpeg_write(ctx, path, img, 90, 411) == MS_ERR_INVALID);
  snprintf(path, sizeof path, "%s/nodir/x.png", dir);
  CHECK(ms_png_write(ctx, path, img, NULL, 0) == MS_ERR_IO);
  CHECK(strstr(ms_last_error(), "png_write") && strstr(ms_last_error(), path));
  CHECK(count_entries(dir) == before);
  ms_tensor_free(img);
  CHECK(t == NULL);
}

int main(void) {
  CHECK(ms_context_new(&ctx) == MS_OK);
  snprintf(dir, sizeof dir, "/tmp/ms_test_image_io_XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  test_round_trips_and_torture();
  test_errors();
  /* clean up the scratch directory */
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[512];
  while (d && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    remove(path);
  }
  if (d) closedir(d);
  rmdir(dir);
  ms_context_free(ctx);
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
