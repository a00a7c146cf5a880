#error "src/app.cpp is the Arduino starter: the ESP-IDF build leaves it out"
