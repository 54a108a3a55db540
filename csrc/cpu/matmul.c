/* matmul.c: CPU matmul through OpenBLAS sgemm/dgemm, batched over broadcast batch dims. */
#include <cblas.h>
#include <limits.h>

#include "basic_kernels.h"
#include "mcsl_kernels.h"

/* f16/bf16: compute in f32 and round once at the end. */
static int matmul_via_f32(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, ms_tensor *out) {
  ms_tensor *af = NULL, *bf = NULL, *of = NULL;
  int st = ms_tensor_new(a->shape, a->ndim, MS_F32, MS_CPU, 0, &af);
  if (!st) st = ms_cpu_copy(ctx, af, a);
  if (!st) st = ms_tensor_new(b->shape, b->ndim, MS_F32, MS_CPU, 0, &bf);
  if (!st) st = ms_cpu_copy(ctx, bf, b);
  if (!st) st = ms_tensor_new(out->shape, out->ndim, MS_F32, MS_CPU, 0, &of);
  if (!st) st = ms_cpu_matmul(ctx, af, bf, of);
  if (!st) st = ms_cpu_copy(ctx, out, of);
  ms_tensor_free(af);
  ms_tensor_free(bf);
  ms_tensor_free(of);
  return st;
}

static void gemm(ms_dtype dt, int ta, int tb, int64_t n, int64_t m, int64_t k, const char *a,
                 int64_t lda, const char *b, int64_t ldb, char *c, int64_t ldc) {
  enum CBLAS_TRANSPOSE A = ta ? CblasTrans : CblasNoTrans, B = tb ? CblasTrans : CblasNoTrans;
  if (dt == MS_F32)
    cblas_sgemm(CblasRowMajor, A, B, (int)n, (int)m, (int)k, 1.0f, (const float *)a, (int)lda,
                (const float *)b, (int)ldb, 0.0f, (float *)c, (int)ldc);
  else
    cblas_dgemm(CblasRowMajor, A, B, (int)n, (int)m, (int)k, 1.0, (const double *)a, (int)lda,
                (const double *)b, (int)ldb, 0.0, (double *)c, (int)ldc);
}

/* One GEMM over nt OpenMP threads, split by rows of c (by columns when there are fewer rows than
 * columns), each part a single-threaded BLAS call: OpenBLAS runs with one thread (context.c), so
 * its spinning pool no longer competes with OpenMP's for the cores (SegFormer's linear layers
 * took 3.5x their CPU time at 2 threads). Every element is still one dot product over all of k,
 * and the row split is in multiples of 16, so the result does not depend on the thread count. */
static void gemm_par(int nt, ms_dtype dt, int ta, int tb, int64_t n, int64_t m, int64_t k,
                     const char *a, int64_t lda, const char *b, int64_t ldb, char *c) {
  int64_t es = ms_dtype_size(dt);
  int rows = n >= m;
  int64_t span = rows ? n : m, units = (span + 15) / 16;
  if (nt > units) nt = (int)units;
  if (nt <= 1 || 2.0 * (double)n * (double)m * (double)k < 4e6) {
    gemm(dt, ta, tb, n, m, k, a, lda, b, ldb, c, m);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int t = 0; t < nt; t++) {
    int64_t p0 = units * t / nt * 16, p1 = units * (t + 1) / nt * 16;
    if (p1 > span) p1 = span;
    if (rows)
      gemm(dt, ta, tb, p1 - p0, m, k, a + (ta ? p0 : p0 * lda) * es, lda, b, ldb, c + p0 * m * es,
           m);
    else
      gemm(dt, ta, tb, n, p1 - p0, k, a, lda, b + (tb ? p0 * ldb : p0) * es, ldb, c + p0 * es, m);
  }
}

/* True when a's batch dims and rows form one matrix of batch*n rows with row step lda. */
static int batch_folds_into_rows(const ms_tensor *a, int nb, int64_t n, int64_t lda) {
  int64_t expect = n * lda;
  for (int i = nb - 1; i >= 0; i--) {
    if (a->shape[i] == 1) continue;
    if (a->strides[i] != expect) return 0;
    expect *= a->shape[i];
  }
  return 1;
}

int ms_cpu_matmul(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, ms_tensor *out) {
  if (a->dtype == MS_F16 || a->dtype == MS_BF16) return matmul_via_f32(ctx, a, b, out);
  int nd = out->ndim, nb = nd - 2;
  int64_t n = out->shape[nd - 2], m = out->shape[nd - 1], k = a->shape[nd - 1];
  int64_t batch = ms_numel_of(out->shape, nb), es = ms_dtype_size(out->dtype);
  if (n == 0 || m == 0 || batch == 0) return MS_OK;
  if (k == 0) {
    memset(ms_data(out), 0, (size_t)(batch * n * m * es));
    return MS_OK;
  }
  int64_t lda, ldb;
  int ta = ms_blas_layout(n, k, a->strides[nd - 2], a->strides[nd - 1], &lda);
  int tb = ms_blas_layout(k, m, b->strides[nd - 2], b->strides[nd - 1], &ldb);
  if (ta < 0 || tb < 0)
    return ms_fail(MS_ERR_INTERNAL, "matmul: operand layout %s / %s is not BLAS-readable",
                   ms_desc(a), ms_desc(b));
  if (n * batch > INT_MAX || m > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX)
    return ms_fail(MS_ERR_UNSUPPORTED, "matmul: %s x %s exceeds BLAS's 32-bit sizes", ms_desc(a),
                   ms_desc(b));
  int nt = ms_threads(ctx);
  int b_shared = 1;
  for (int i = 0; i < nb; i++)
    if (b->shape[i] != 1 && b->strides[i] != 0) b_shared = 0;
  const char *pa = ms_data(a), *pb = ms_data(b);
  char *pc = ms_data(out);
  /* [B, n, k] x [k, m] (a linear layer over a batch): one GEMM of B*n rows. */
  if (b_shared && ta == 0 && batch_folds_into_rows(a, nb, n, lda)) {
    gemm_par(nt, out->dtype, 0, tb, batch * n, m, k, pa, lda, pb, ldb, pc);
    return MS_OK;
  }
  /* matrices split over the threads when there are enough of them, else each one */
  int across = batch >= nt && 2.0 * (double)batch * (double)n * (double)m * (double)k >= 4e6;
#pragma omp parallel for num_threads(nt) schedule(static) if (across && nt > 1)
  for (int64_t bi = 0; bi < batch; bi++) {
    int64_t r = bi, oa = 0, ob = 0;
    for (int i = nb - 1; i >= 0; i--) {
      int64_t idx = r % out->shape[i];
      r /= out->shape[i];
      oa += idx * a->strides[i];
      ob += idx * b->strides[i];
    }
    const char *ai = pa + oa * es, *bb = pb + ob * es;
    char *ci = pc + bi * n * m * es;
    if (across)
      gemm(out->dtype, ta, tb, n, m, k, ai, lda, bb, ldb, ci, m);
    else
      gemm_par(nt, out->dtype, ta, tb, n, m, k, ai, lda, bb, ldb, ci);
  }
  return MS_OK;
}
