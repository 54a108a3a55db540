/* loader.c: the multi-threaded batch loader: decode + augment in C workers, bounded queue,
 * per-epoch shuffling from the seed, sharding, savable position, clean shutdown. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/philox.h"
#include "dataset.h"

/* A batch slot of the ring: batch number g lives in slot g % nslots. */
typedef struct {
  int64_t g; /* which global batch this slot holds (-1: empty) */
  int ready; /* worker finished (tensors or error) */
  int status;
  char error[1024];
  ms_tensor *images, *labels;
  int64_t skipped;
} slot;

struct ms_loader {
  ms_loader_config cfg;
  const ms_dataset *ds;
  ms_transform *ops;
  int n_ops;
  int64_t per_rank; /* samples this rank sees per epoch */
  int64_t batches;  /* batches per epoch */
  int64_t next_g;   /* next global batch the consumer takes */
  int64_t skipped;
  /* epoch order cache: this rank's samples for two epochs (slot epoch & 1), so workers on
   * both sides of an epoch boundary do not rebuild the permutation for every sample */
  int64_t *order[2];
  int64_t order_epoch[2];
  pthread_mutex_t order_lock;
  /* workers */
  int nslots;
  slot *slots;
  pthread_t *threads;
  int nthreads;
  int stop;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int64_t consumer_g;   /* batches below this are released by the consumer */
  ms_context *sync_ctx; /* for num_workers = 0 */
};

typedef struct {
  ms_loader *l;
  int64_t first_g; /* the first batch this worker makes (fixed before the thread starts) */
  ms_context *ctx;
} worker_arg;

/* ---- epoch order ------------------------------------------------------------------ */

/* Uniform integer in [0, n) from the Philox stream (seed, counter = (epoch, i)). */
static uint64_t draw(uint64_t seed, uint64_t epoch, uint64_t i, uint64_t n) {
  uint32_t w[4];
  ms_philox_block(seed ^ 0x5eed5eed5eedULL, i, epoch, w);
  uint64_t r = ((uint64_t)w[1] << 32) | w[0];
  return r % n;
}

/* Fills order with this rank's samples of the epoch: a seeded Fisher-Yates permutation
 * (when shuffling), padded by wrapping to a multiple of world_size, then every
 * world_size-th element from rank (PyTorch's DistributedSampler layout). */
static int build_order(ms_loader *l, int64_t epoch, int64_t *order) {
  int64_t n = l->ds->n, w = l->cfg.world_size, total = (n + w - 1) / w * w;
  int64_t *perm = malloc(sizeof *perm * (size_t)n);
  if (!perm) return ms_fail(MS_ERR_OOM, "loader: out of memory for the epoch order");
  for (int64_t i = 0; i < n; i++)
    perm[i] = i;
  if (l->cfg.shuffle)
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)draw(l->cfg.seed, (uint64_t)epoch, (uint64_t)i, (uint64_t)i + 1);
      int64_t t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
  for (int64_t k = 0, i = l->cfg.rank; i < total; i += w, k++)
    order[k] = perm[i % n];
  free(perm);
  return MS_OK;
}

/* Dataset index of position k in epoch's order (k < per_rank). */
static int sample_at(ms_loader *l, int64_t epoch, int64_t k, int64_t *idx) {
  pthread_mutex_lock(&l->order_lock);
  int rc = MS_OK, e = (int)(epoch & 1);
  if (l->order_epoch[e] != epoch) {
    rc = build_order(l, epoch, l->order[e]);
    l->order_epoch[e] = rc ? -1 : epoch;
  }
  if (!rc) *idx = l->order[e][k];
  pthread_mutex_unlock(&l->order_lock);
  return rc;
}

/* ---- one sample ---------------------------------------------------------------------- */

static int check_label(const ms_loader *l, const ms_tensor *lab, const ms_sample *s) {
  int64_t n = ms_numel(lab), nc = l->cfg.num_classes, ign = l->cfg.ignore_index;
  const uint8_t *p = (const uint8_t *)ms_data(lab);
  if (nc <= 0) return MS_OK;
  for (int64_t i = 0; i < n; i++)
    if (p[i] >= nc && p[i] != ign)
      return ms_fail(MS_ERR_INVALID,
                     "label %s (%s): value %d at pixel %lld is outside [0, %lld) and is not "
                     "the ignore index %lld",
                     s->label, s->origin, p[i], (long long)i, (long long)nc, (long long)ign);
  return MS_OK;
}

/* ADE20K's annotation convention (MMSegmentation's reduce_zero_label; PaddleSeg's uint8
 * `label - 1`): 0 "other" becomes the ignore value 255, class c becomes c - 1, 255 stays 255.
 * Done at decode time, before the augmentations, so their label padding (255) stays ignored. */
static void reduce_zero_label(ms_tensor *lab) {
  int64_t n = ms_numel(lab);
  uint8_t *p = (uint8_t *)ms_data(lab);
  for (int64_t i = 0; i < n; i++)
    p[i] = p[i] == 0 ? 255 : p[i] == 255 ? 255 : (uint8_t)(p[i] - 1);
}

/* Decodes and augments sample idx; *img f32 [3, H, W], *lab u8 [H, W] or NULL. */
static int load_sample(ms_loader *l, ms_context *ctx, int64_t epoch, int64_t idx, ms_tensor **img,
                       ms_tensor **lab) {
  const ms_sample *s = &l->ds->samples[idx];
  ms_tensor *im = NULL, *lb = NULL, *im2 = NULL, *lb2 = NULL;
  *img = *lab = NULL;
  int rc = ms_image_read(ctx, s->image, MS_IMAGE_RGB, &im);
  if (rc) {
    char msg[900];
    snprintf(msg, sizeof msg, "%s", ms_last_error());
    return ms_fail(rc, "sample %s: %s", s->origin, msg);
  }
  if (s->label) {
    rc = ms_image_read(ctx, s->label, MS_IMAGE_LABEL, &lb);
    if (rc) {
      char msg[900];
      snprintf(msg, sizeof msg, "%s", ms_last_error());
      ms_tensor_free(im);
      return ms_fail(rc, "sample %s: %s", s->origin, msg);
    }
    if (l->cfg.reduce_zero_label) reduce_zero_label(lb);
    if (lb->shape[0] != im->shape[0] || lb->shape[1] != im->shape[1]) {
      rc = ms_fail(MS_ERR_INVALID, "sample %s: image %s is %lldx%lld but label %s is %lldx%lld",
                   s->origin, s->image, (long long)im->shape[1], (long long)im->shape[0], s->label,
                   (long long)lb->shape[1], (long long)lb->shape[0]);
      goto done;
    }
  }
  /* The label stays u8 here; make_batch widens it straight into the batch's int64 slice. */
  rc = ms_transform_apply(ctx, l->ops, l->n_ops, l->cfg.seed, (uint64_t)epoch, (uint64_t)idx, im,
                          lb, &im2, lb ? &lb2 : NULL);
  if (rc) {
    char msg[900];
    snprintf(msg, sizeof msg, "%s", ms_last_error());
    rc = ms_fail(rc, "sample %s: %s", s->origin, msg);
    goto done;
  }
  if (lb2 && (rc = check_label(l, lb2, s))) goto done;
  *img = im2, *lab = lb2;
  im2 = lb2 = NULL;
done:
  ms_tensor_free(im);
  ms_tensor_free(lb);
  ms_tensor_free(im2);
  ms_tensor_free(lb2);
  return rc;
}

/* ---- one batch ------------------------------------------------------------------------- */

/* Builds global batch g into sl (status and message kept in the slot). */
static void make_batch(ms_loader *l, ms_context *ctx, int64_t g, slot *sl) {
  int64_t epoch = g / l->batches, b = g % l->batches;
  int64_t first = b * l->cfg.batch_size;
  int64_t count =
      first + l->cfg.batch_size <= l->per_rank ? l->cfg.batch_size : l->per_rank - first;
  int rc = MS_OK;
  ms_tensor *images = NULL, *labels = NULL;
  sl->skipped = 0;
  for (int64_t k = 0; k < count && !rc; k++) {
    int64_t pos = first + k, idx = 0;
    ms_tensor *im = NULL, *lb = NULL;
    /* With skip_bad, a bad sample is replaced by the next good one of the epoch order
     * (wrapping), so the batch stays full and the choice does not depend on threads. */
    for (int64_t tries = 0; tries < l->per_rank; tries++) {
      if ((rc = sample_at(l, epoch, (pos + tries) % l->per_rank, &idx))) break;
      rc = load_sample(l, ctx, epoch, idx, &im, &lb);
      if (!rc || !l->cfg.skip_bad || rc == MS_ERR_OOM) break;
      fprintf(stderr, "moonseg loader: skipping bad sample: %s\n", ms_last_error());
      sl->skipped++;
    }
    if (rc) break;
    if (!images) {
      int64_t shape[4] = {count, im->shape[0], im->shape[1], im->shape[2]};
      rc = ms_tensor_new(shape, 4, MS_F32, MS_CPU, 0, &images);
      if (!rc && lb) {
        int64_t lshape[3] = {count, lb->shape[0], lb->shape[1]};
        rc = ms_tensor_new(lshape, 3, MS_I64, MS_CPU, 0, &labels);
      }
    } else if (im->shape[1] != images->shape[2] || im->shape[2] != images->shape[3] ||
               (lb != NULL) != (labels != NULL)) {
      rc = ms_fail(MS_ERR_INVALID,
                   "loader: samples of one batch differ in size (%s is %lldx%lld, the batch is "
                   "%lldx%lld): crop or resize them to one size, or use batch_size 1",
                   l->ds->samples[idx].origin, (long long)im->shape[2], (long long)im->shape[1],
                   (long long)images->shape[3], (long long)images->shape[2]);
    }
    if (!rc) {
      int64_t isz = ms_numel(im) * 4;
      memcpy((char *)images->storage->data + k * isz, ms_data(im), (size_t)isz);
      if (lb) {
        int64_t npx = ms_numel(lb);
        const uint8_t *src = (const uint8_t *)ms_data(lb);
        int64_t *dst = (int64_t *)labels->storage->data + k * npx;
        for (int64_t i = 0; i < npx; i++)
          dst[i] = src[i];
      }
    }
    ms_tensor_free(im);
    ms_tensor_free(lb);
  }
  if (rc) {
    snprintf(sl->error, sizeof sl->error, "%s", ms_last_error());
    ms_tensor_free(images);
    ms_tensor_free(labels);
    images = labels = NULL;
  }
  sl->status = rc;
  sl->images = images;
  sl->labels = labels;
}

/* ---- workers ---------------------------------------------------------------------------- */

static void *worker_main(void *p) {
  worker_arg *a = p;
  ms_loader *l = a->l;
  pthread_mutex_lock(&l->lock);
  int64_t g = a->first_g; /* not next_g: the consumer may have moved on before we run */
  while (!l->stop) {
    slot *sl = &l->slots[g % l->nslots];
    /* The slot is ours once the consumer released the batch nslots before g. */
    while (!l->stop && g - l->nslots >= l->consumer_g)
      pthread_cond_wait(&l->cond, &l->lock);
    if (l->stop) break;
    pthread_mutex_unlock(&l->lock);
    make_batch(l, a->ctx, g, sl);
    pthread_mutex_lock(&l->lock);
    sl->g = g;
    sl->ready = 1;
    pthread_cond_broadcast(&l->cond);
    g += l->cfg.num_workers; /* worker i makes batches i, i + W, ... (W fixed up front) */
  }
  pthread_mutex_unlock(&l->lock);
  ms_context_free(a->ctx);
  free(a);
  return NULL;
}

static void stop_workers(ms_loader *l) {
  if (!l->threads) return;
  pthread_mutex_lock(&l->lock);
  l->stop = 1;
  pthread_cond_broadcast(&l->cond);
  pthread_mutex_unlock(&l->lock);
  for (int i = 0; i < l->nthreads; i++)
    pthread_join(l->threads[i], NULL);
  free(l->threads);
  l->threads = NULL;
  for (int i = 0; i < l->nslots; i++) {
    ms_tensor_free(l->slots[i].images);
    ms_tensor_free(l->slots[i].labels);
    memset(&l->slots[i], 0, sizeof l->slots[i]);
    l->slots[i].g = -1;
  }
  l->stop = 0;
}

static int start_workers(ms_loader *l) {
  l->consumer_g = l->next_g;
  if (l->cfg.num_workers == 0) return MS_OK;
  l->threads = calloc((size_t)l->cfg.num_workers, sizeof *l->threads);
  if (!l->threads) return ms_fail(MS_ERR_OOM, "loader: out of memory");
  l->nthreads = 0;
  for (int i = 0; i < l->cfg.num_workers; i++) {
    worker_arg *a = calloc(1, sizeof *a);
    int rc = a ? ms_context_new(&a->ctx) : ms_fail(MS_ERR_OOM, "loader: out of memory");
    if (!rc) {
      a->ctx->num_threads = 1; /* parallelism is across samples */
      a->l = l;
      a->first_g = l->next_g + i;
      if (pthread_create(&l->threads[i], NULL, worker_main, a) != 0) {
        ms_context_free(a->ctx);
        rc = ms_fail(MS_ERR_INTERNAL, "loader: pthread_create failed for worker %d", i);
      }
    }
    if (rc) {
      free(a);
      l->nthreads = i;
      stop_workers(l);
      return rc;
    }
    l->nthreads = i + 1;
  }
  return MS_OK;
}

/* ---- public API -------------------------------------------------------------------------- */

int ms_loader_new(ms_context *ctx, const ms_dataset *ds, const ms_loader_config *cfg,
                  const ms_transform *ops, int n_ops, ms_loader **out) {
  (void)ctx;
  if (!ds || !cfg || !out || (n_ops && !ops) || n_ops < 0)
    return ms_fail(MS_ERR_INVALID, "loader_new: NULL argument");
  if (ds->n == 0) return ms_fail(MS_ERR_INVALID, "loader_new: the dataset is empty");
  if (cfg->batch_size < 1)
    return ms_fail(MS_ERR_INVALID, "loader_new: batch_size must be >= 1, got %d", cfg->batch_size);
  if (cfg->num_workers < 0 || cfg->num_workers > 256)
    return ms_fail(MS_ERR_INVALID, "loader_new: num_workers must be in 0..256, got %d",
                   cfg->num_workers);
  if (cfg->reduce_zero_label != 0 && cfg->reduce_zero_label != 1)
    return ms_fail(MS_ERR_INVALID, "loader_new: reduce_zero_label must be 0 or 1, got %d",
                   cfg->reduce_zero_label);
  if (cfg->world_size < 1 || cfg->rank < 0 || cfg->rank >= cfg->world_size)
    return ms_fail(MS_ERR_INVALID, "loader_new: rank %d is not in [0, world_size %d)", cfg->rank,
                   cfg->world_size);
  if (ds->with_labels && ds->with_labels != ds->n)
    return ms_fail(MS_ERR_INVALID, "loader_new: %lld of %lld samples have labels; all or none must",
                   (long long)ds->with_labels, (long long)ds->n);
  ms_loader *l = calloc(1, sizeof *l);
  if (!l) return ms_fail(MS_ERR_OOM, "loader_new: out of memory");
  l->cfg = *cfg;
  if (l->cfg.prefetch < 1) l->cfg.prefetch = 2;
  l->ds = ds;
  l->per_rank = (ds->n + cfg->world_size - 1) / cfg->world_size;
  l->batches = cfg->drop_last ? l->per_rank / cfg->batch_size
                              : (l->per_rank + cfg->batch_size - 1) / cfg->batch_size;
  if (l->batches == 0) {
    free(l);
    return ms_fail(MS_ERR_INVALID,
                   "loader_new: %lld samples per rank give no full batch of %d with drop_last",
                   (long long)((ds->n + cfg->world_size - 1) / cfg->world_size), cfg->batch_size);
  }
  for (int e = 0; e < 2; e++) {
    l->order[e] = malloc(sizeof *l->order[e] * (size_t)l->per_rank);
    l->order_epoch[e] = -1;
  }
  l->nslots = cfg->num_workers > 0 ? cfg->num_workers * l->cfg.prefetch : 1;
  l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
  if (n_ops) {
    l->ops = malloc(sizeof *l->ops * (size_t)n_ops);
    if (l->ops) memcpy(l->ops, ops, sizeof *l->ops * (size_t)n_ops);
  }
  l->n_ops = n_ops;
  int rc = (!l->order[0] || !l->order[1] || !l->slots || (n_ops && !l->ops))
               ? ms_fail(MS_ERR_OOM, "loader_new: out of memory")
               : MS_OK;
  if (!rc) rc = ms_context_new(&l->sync_ctx);
  pthread_mutex_init(&l->lock, NULL);
  pthread_mutex_init(&l->order_lock, NULL);
  pthread_cond_init(&l->cond, NULL);
  for (int i = 0; i < l->nslots && l->slots; i++)
    l->slots[i].g = -1;
  if (!rc) rc = start_workers(l);
  if (rc) {
    ms_loader_free(l);
    return rc;
  }
  *out = l;
  return MS_OK;
}

void ms_loader_free(ms_loader *l) {
  if (!l) return;
  stop_workers(l);
  if (l->slots)
    for (int i = 0; i < l->nslots; i++) {
      ms_tensor_free(l->slots[i].images);
      ms_tensor_free(l->slots[i].labels);
    }
  free(l->slots);
  free(l->order[0]);
  free(l->order[1]);
  free(l->ops);
  ms_context_free(l->sync_ctx);
  pthread_mutex_destroy(&l->lock);
  pthread_mutex_destroy(&l->order_lock);
  pthread_cond_destroy(&l->cond);
  free(l);
}

int ms_loader_next(ms_loader *l, ms_tensor **images, ms_tensor **labels, int64_t *epoch,
                   int64_t *index) {
  if (!l || !images) return ms_fail(MS_ERR_INVALID, "loader_next: NULL argument");
  int64_t g = l->next_g;
  slot local, *sl;
  if (l->cfg.num_workers == 0) {
    memset(&local, 0, sizeof local);
    make_batch(l, l->sync_ctx, g, &local);
    sl = &local;
  } else {
    sl = &l->slots[g % l->nslots];
    pthread_mutex_lock(&l->lock);
    while (!(sl->ready && sl->g == g))
      pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
  }
  int rc = sl->status;
  if (rc) ms_fail(rc, "%s", sl->error); /* re-raised on the consumer's thread */
  *images = sl->images;
  if (labels)
    *labels = sl->labels;
  else
    ms_tensor_free(sl->labels);
  l->skipped += sl->skipped;
  if (epoch) *epoch = g / l->batches;
  if (index) *index = g % l->batches;
  sl->images = sl->labels = NULL;
  if (l->cfg.num_workers > 0) {
    pthread_mutex_lock(&l->lock);
    sl->ready = 0;
    l->consumer_g = g + 1;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
  }
  /* A failed batch is not retried: the position moves on so the caller may skip it. */
  l->next_g = g + 1;
  return rc;
}

int64_t ms_loader_batches_per_epoch(const ms_loader *l) { return l ? l->batches : 0; }
int64_t ms_loader_samples_per_epoch(const ms_loader *l) { return l ? l->per_rank : 0; }
int64_t ms_loader_skipped(const ms_loader *l) { return l ? l->skipped : 0; }

int ms_loader_position(const ms_loader *l, int64_t *epoch, int64_t *batch) {
  if (!l || !epoch || !batch) return ms_fail(MS_ERR_INVALID, "loader_position: NULL argument");
  *epoch = l->next_g / l->batches;
  *batch = l->next_g % l->batches;
  return MS_OK;
}

int ms_loader_seek(ms_loader *l, int64_t epoch, int64_t batch) {
  if (!l) return ms_fail(MS_ERR_INVALID, "loader_seek: NULL loader");
  if (epoch < 0 || batch < 0 || batch >= l->batches)
    return ms_fail(MS_ERR_INVALID,
                   "loader_seek: position (epoch %lld, batch %lld) out of range "
                   "(%lld batches per epoch)",
                   (long long)epoch, (long long)batch, (long long)l->batches);
  stop_workers(l);
  l->next_g = epoch * l->batches + batch;
  return start_workers(l);
}
