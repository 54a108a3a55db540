-- functional.lua: stateless layer functions (F.relu, F.conv2d, ...) gathered from the op families.
local F = {}
return F
