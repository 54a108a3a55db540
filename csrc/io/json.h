/* json.h: a small strict JSON reader (objects, arrays, strings, numbers) for file headers. */
#ifndef MS_JSON_H
#define MS_JSON_H
#include <stdint.h>

typedef enum {
  MS_JSON_NULL,
  MS_JSON_BOOL,
  MS_JSON_NUM,
  MS_JSON_STR,
  MS_JSON_ARR,
  MS_JSON_OBJ
} ms_json_type;

typedef struct ms_json {
  ms_json_type type;
  double num;
  int is_int; /* num held an integer literal without fraction/exponent */
  int64_t ival;
  char *str;   /* MS_JSON_STR: UTF-8, NUL-terminated */
  int n;       /* children of arrays and objects */
  char **keys; /* MS_JSON_OBJ: key of each child */
  struct ms_json **items;
} ms_json;

/* Parses text[0..len); on failure returns NULL and writes a message with the byte offset into err.
 */
ms_json *ms_json_parse(const char *text, int64_t len, char *err, int errlen);
void ms_json_free(ms_json *j);
/* Child of an object by key, or NULL. */
const ms_json *ms_json_get(const ms_json *obj, const char *key);

#endif
