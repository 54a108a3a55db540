# Writes OUT: a C file whose ms_cdef() returns the text between the CDEF markers of HEADER.
file(READ "${HEADER}" text)
string(FIND "${text}" "/* MS_CDEF_BEGIN */" begin)
string(FIND "${text}" "/* MS_CDEF_END */" end)
if(begin EQUAL -1 OR end EQUAL -1)
  message(FATAL_ERROR "${HEADER}: MS_CDEF_BEGIN/MS_CDEF_END markers not found")
endif()
string(LENGTH "/* MS_CDEF_BEGIN */" mlen)
math(EXPR start "${begin} + ${mlen}")
math(EXPR len "${end} - ${start}")
string(SUBSTRING "${text}" ${start} ${len} cdef)
file(WRITE "${OUT}.tmp" "${cdef}")
file(READ "${OUT}.tmp" hex HEX)
file(REMOVE "${OUT}.tmp")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}" "/* Generated from moonseg.h by embed_cdef.cmake: do not edit. */\n"
  "static const char text[] = {${bytes}0};\n"
  "const char *ms_cdef(void);\nconst char *ms_cdef(void) { return text; }\n")
