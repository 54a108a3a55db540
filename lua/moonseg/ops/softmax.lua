-- softmax.lua: (op family, being written)
return function(ms, T, A, L) end
