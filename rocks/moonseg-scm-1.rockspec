-- luarocks make rocks/moonseg-scm-1.rockspec   (builds libmoonseg with CMake and installs the Lua modules)
rockspec_format = "3.0"
package = "moonseg"
version = "scm-1"
source = { url = "git+file:///dev/null" }
description = {
  summary = "Semantic-segmentation training on a small C core, scripted from LuaJIT",
  detailed = "moonseg trains PP-LiteSeg and other segmentation networks: tensors, CPU (oneDNN, OpenBLAS) and CUDA ops, autograd, data loading, distributed training.",
  license = "MIT",
}
dependencies = { "lua >= 5.1" }
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    MS_BUILD_TESTS = "OFF",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    MS_LUA_INSTALL_DIR = "$(LUADIR)",
    MS_LIB_INSTALL_DIR = "$(LIBDIR)",
  },
}
