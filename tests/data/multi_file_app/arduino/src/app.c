#error "src/app.c is the ESP-IDF starter: the Arduino build leaves it out"
