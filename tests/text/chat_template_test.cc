#include "engine/text/chat_template.h"

#include "gtest/gtest.h"

TEST(ChatTemplate, Placeholder) {}
