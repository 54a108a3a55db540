-- placeholder
print("ok")
